"""Reconstructed muons and electrons: prompt leptons from W/Z decays and soft leptons in jets.

Prompt leptons are isolated (``pfRelIso04_all`` about 0.03) with small impact parameters.
Soft leptons are the semileptonic-decay candidates inside jets: they carry the candidate's
impact parameter (displaced for b and c decays), are not isolated because the rest of the
jet surrounds them, and point back to their jet through ``jetIdx``.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate.jets import ELECTRON_PT_MIN, ELECTRON_ABSETA_MAX, MUON_ABSETA_MAX, MUON_PT_MIN
from advcalib.generate.processes import Leptons
from advcalib.generate.table import Table, local_index

MUON_MASS, ELECTRON_MASS = 0.10566, 0.000511


def _prompt(rng: np.random.Generator, leptons: Leptons, flavour: int) -> Table:
    pt_min, eta_max, resolution = (MUON_PT_MIN, MUON_ABSETA_MAX, 0.012) if flavour == 13 else (ELECTRON_PT_MIN, ELECTRON_ABSETA_MAX, 0.025)
    sel = (leptons.flavour == flavour) & (np.abs(leptons.eta) < eta_max)
    n = int(sel.sum())
    pt = leptons.pt[sel] * rng.normal(1.0, resolution, n)
    iso = np.where(rng.random(n) < 0.06, rng.exponential(0.2, n), rng.exponential(0.025, n))
    dxy_err = rng.uniform(0.0008, 0.003, n)
    keep = pt > pt_min
    table = Table(event=leptons.event[sel], pt=pt, eta=leptons.eta[sel], phi=leptons.phi[sel], charge=leptons.charge[sel],
                  iso=iso, dxy=rng.normal(0, 0.6, n) * dxy_err, dxyErr=dxy_err, dz=rng.normal(0, 0.004, n),
                  dzErr=rng.uniform(0.001, 0.005, n), jet=np.full(n, -1), prompt=np.ones(n, bool))
    return table.take(keep)


def _soft(rng: np.random.Generator, cands: Table, jets: Table, flavour: int) -> Table:
    sel = cands["is_lepton"] & (np.abs(cands["pdgId"]) == flavour) & jets["lepton_reconstructed"][cands["jet"]]
    c = cands.take(np.flatnonzero(sel))
    jet = c["jet"]
    n = len(jet)
    surrounding = jets["raw_pt"][jet] - c["pt"]
    iso = np.clip(surrounding * rng.uniform(0.25, 0.8, n) / c["pt"], 0.0, 50.0)
    return Table(event=jets["event"][jet], pt=c["pt"], eta=c["eta"], phi=c["phi"], charge=c["charge"], iso=iso,
                 dxy=c["d0"], dxyErr=c["d0Err"], dz=c["dz"], dzErr=c["dzErr"], jet=jet, prompt=np.zeros(n, bool))


def build_leptons(rng: np.random.Generator, leptons: Leptons, cands: Table, jets: Table, flavour: int) -> Table:
    """Muons (``flavour`` 13) or electrons (11) of every event, sorted by event and descending pt."""
    table = Table.concat([_prompt(rng, leptons, flavour), _soft(rng, cands, jets, flavour)])
    table = table.take(np.lexsort((-table["pt"], table["event"])))
    n = len(table["pt"])
    ip3d = np.hypot(table["dxy"], table["dz"])
    table["ip3d"] = ip3d
    table["sip3d"] = ip3d / np.hypot(table["dxyErr"], table["dzErr"])
    if flavour == 13:
        table["tightId"] = rng.random(n) < np.where(table["prompt"], 0.97, 0.9)
        table["mediumId"] = table["tightId"] | (rng.random(n) < 0.5)
    else:
        table["mvaIso_WP80"] = rng.random(n) < np.where(table["prompt"], 0.9, 0.04)
        table["mvaIso_WP90"] = table["mvaIso_WP80"] | (rng.random(n) < np.where(table["prompt"], 0.6, 0.1))
        table["cutBased"] = np.where(table["prompt"], rng.choice([2, 3, 4], size=n, p=[0.05, 0.1, 0.85]),
                                     rng.choice([0, 1, 2], size=n, p=[0.6, 0.3, 0.1])).astype(np.int32)
    return table


def jet_lepton_indices(table: Table, jets: Table, n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per lepton: its jet's local index; per jet: first and second lepton local index and the count.

    Missing indices are -1, as in NanoAOD.
    """
    lepton_local = local_index(table["event"], n_events)
    jet_local = local_index(jets["event"], n_events)
    in_jet = table["jet"] >= 0
    jet_index = np.where(in_jet, jet_local[np.maximum(table["jet"], 0)], -1)
    n_jets = len(jets["event"])
    owners = table["jet"][in_jet]
    order = np.lexsort((lepton_local[in_jet], owners))
    owners, ranks = owners[order], lepton_local[in_jet][order]
    position = local_index(owners, n_jets)
    first = np.full(n_jets, -1)
    second = np.full(n_jets, -1)
    first[owners[position == 0]] = ranks[position == 0]
    second[owners[position == 1]] = ranks[position == 1]
    return jet_index, first, second, np.bincount(owners, minlength=n_jets)
