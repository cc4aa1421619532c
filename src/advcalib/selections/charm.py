"""Charm-enriched region: W+c with a soft muon inside the charm jet.

The same soft-muon-in-jet selection with at least four jets and no mT cut makes the
semileptonic ttbar region of ``bottom.py``, so both call :func:`select_soft_muon_region`.
The charge sign osss = -q(lepton) q(soft muon) is +1 for opposite sign: in W+c the W
and the charm quark's muon have opposite charges, while the background is symmetric.
"""

from __future__ import annotations

from typing import Any

import awkward as ak

from advcalib.selections import objects
from advcalib.selections.cuts import CutTable, SelectionSteps

CHANNELS: tuple[str, ...] = ("m", "e")


def select_charm(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select W+c events (1 to 3 jets, mT cut in the table)."""
    return select_soft_muon_region(events, cuts, channel)


def _leptons(events: Any, cuts: CutTable, channel: str) -> tuple[ak.Array, ak.Array, ak.Array]:
    """Return the channel's leptons, the mask of tagged ones and the lepton-veto mask."""
    source = objects.source_name(events)
    muons = objects.collection(events, "Muon")
    electrons = objects.collection(events, "Electron")
    n_veto_muons = ak.sum(objects.isolated_muons(muons, cuts, pt=cuts["veto_muon_pt"]), axis=1)
    n_veto_electrons = ak.sum(
        objects.isolated_electrons(electrons, cuts, pt=cuts["veto_electron_pt"], source=source), axis=1
    )
    if channel == "m":
        tagged = objects.isolated_muons(muons, cuts, pt=cuts["muon_pt"])
        veto_ok = (n_veto_muons == 1) & (n_veto_electrons == 0)
        return muons, tagged, veto_ok
    if channel == "e":
        tagged = objects.isolated_electrons(electrons, cuts, pt=cuts["electron_pt"], source=source)
        veto_ok = (n_veto_electrons == 1) & (n_veto_muons == 0)
        return electrons, tagged, veto_ok
    raise ValueError(f"soft-muon regions have channels {', '.join(CHANNELS)}, not {channel!r}")


def select_soft_muon_region(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select one isolated lepton, jets and a soft muon in a jet; probe = that jet.

    Steps: trigger, exactly one tagged lepton, no second isolated lepton, the jet
    multiplicity, a soft muon in a selected jet, then mT (if the table has ``mt_min``)
    and, in the muon channel, the m(lepton, soft muon) cuts. Where several jets hold a
    soft muon, the leading such jet and its leading soft muon are used.
    """
    leptons, tagged, veto_ok = _leptons(events, cuts, channel)
    lepton = ak.firsts(leptons[tagged])

    jets = objects.collection(events, "Jet")
    jet_ok = objects.good_jets(jets, cuts) & objects.far_from(jets, ak.singletons(lepton), cuts["jet_lepton_dr"])
    n_jets = ak.sum(jet_ok, axis=1)
    multiplicity_ok = n_jets >= cuts["n_jets_min"]
    if cuts["n_jets_max"] is not None:
        multiplicity_ok = multiplicity_ok & (n_jets <= cuts["n_jets_max"])

    selected_jets = jets[jet_ok]
    selected_index = ak.local_index(jets, axis=1)[jet_ok]
    muons = objects.collection(events, "Muon")
    candidates = muons[objects.soft_muons(muons, cuts)]
    pairs = ak.argcartesian([selected_jets, candidates], axis=1)
    pair_jet = selected_jets[pairs["0"]]
    pair_muon = candidates[pairs["1"]]
    in_jet = (
        (pair_jet.delta_r(pair_muon) < cuts["soft_muon_jet_dr"])
        & (pair_muon.pt / pair_jet.pt < cuts["soft_muon_pt_ratio_max"])
        & (pair_jet.muEF + pair_jet.neEmEF < cuts["jet_mu_ne_em_fraction_max"])
    )
    chosen = ak.firsts(pairs[in_jet])
    soft_muon = candidates[ak.singletons(chosen["1"])]
    soft_muon = ak.firsts(soft_muon)
    probe = ak.firsts(selected_index[ak.singletons(chosen["0"])])

    steps = {
        "trigger": objects.trigger_mask(events, cuts["triggers"], context=f"soft-muon/{channel}"),
        "one_lepton": ak.sum(tagged, axis=1) == 1,
        "lepton_veto": veto_ok,
        "jet_multiplicity": multiplicity_ok,
        "soft_muon_in_jet": ak.any(in_jet, axis=1),
    }
    if "mt_min" in cuts.names():
        met = objects.collection(events, "MET")
        steps["mt"] = objects.transverse_mass(lepton, met) > cuts["mt_min"]
    if channel == "m":
        mass = (lepton + soft_muon).mass
        low, high = cuts["lepton_soft_muon_mass_veto"]
        steps["lepton_soft_muon_mass"] = (mass > cuts["lepton_soft_muon_mass_min"]) & ((mass < low) | (mass > high))
    osss = -lepton.charge * soft_muon.charge
    return SelectionSteps(steps=steps, probe=probe, osss=osss)


