"""Simulate one chunk of events and lay it out as PFNano branches.

A :class:`Chunk` contains flat event-level branches and jagged collections (counts per event
plus one flat array per field) named and typed as in CMS PFNano. Collections reference
each other by local indices inside the event (``Jet_muonIdx1``, ``JetPFCands_pFCandsIdx``,
``JetSVs_sVIdx``...), which coffea's ``PFNanoAODSchema`` turns into cross-references.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from advcalib.generate import events as ev
from advcalib.generate.constituents import build_constituents
from advcalib.generate.jets import reco_jets, soft_muon_filter
from advcalib.generate.leptons import MUON_MASS, ELECTRON_MASS, build_leptons, jet_lepton_indices
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.processes import W_PRODUCTION, HardEvents, Leptons, Partons, decay_w, sample_process
from advcalib.generate.table import Table, local_index
from advcalib.generate.tagger import deepjet_probabilities, stored_discriminators
from advcalib.generate.tagvars import add_candidate_btag, deepcsv_variables
from advcalib.generate.vertices import build_vertices


@dataclass
class Chunk:
    """Branches of a chunk: ``scalars[name]`` per event, ``collections[name] = (counts, {field: flat array})``."""

    n_events: int
    n_generated: int
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    collections: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)
    truth_flavour: np.ndarray | None = None


def merge_chunks(chunks: list[Chunk]) -> Chunk:
    """Merge ``chunks`` into one chunk with their events in order, concatenating each branch once.

    Local indices (``Jet_muonIdx1``, ``JetPFCands_pFCandsIdx``...) count inside an event, so
    they stay valid. Every chunk must carry the same branches, as chunks of one dataset do.
    """
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    merged = Chunk(n_events=sum(c.n_events for c in chunks), n_generated=sum(c.n_generated for c in chunks))
    merged.scalars = {k: np.concatenate([c.scalars[k] for c in chunks]) for k in first.scalars}
    for name, (_, fields) in first.collections.items():
        counts = np.concatenate([c.collections[name][0] for c in chunks])
        merged.collections[name] = (counts, {f: np.concatenate([c.collections[name][1][f] for c in chunks]) for f in fields})
    if first.truth_flavour is not None:
        merged.truth_flavour = np.concatenate([c.truth_flavour for c in chunks])
    return merged


def _take_events(rows: Leptons | Partons, keep: np.ndarray, new_index: np.ndarray) -> Leptons | Partons:
    """Select the rows of a :class:`Leptons` or :class:`Partons` in the events where ``keep`` and renumber the events."""
    selected = keep[rows.event]
    taken = type(rows)(*(getattr(rows, f)[selected] for f in rows.__dataclass_fields__))
    taken.event = new_index[taken.event]
    return taken


def _restrict(hard: HardEvents, keep: np.ndarray) -> tuple[HardEvents, np.ndarray]:
    """Events of ``hard`` where ``keep``; returns the old-to-new event index map too."""
    new_index = np.cumsum(keep) - 1
    leptons, partons = _take_events(hard.leptons, keep, new_index), _take_events(hard.partons, keep, new_index)
    return HardEvents(int(keep.sum()), leptons, partons, hard.met_x[keep], hard.met_y[keep]), new_index


def _restrict_jets(jets: Table, keep: np.ndarray, new_index: np.ndarray) -> Table:
    jets = jets.take(keep[jets["event"]])
    jets["event"] = new_index[jets["event"]]
    return jets


def _filtered_w_events(rng: np.random.Generator, process: str, n: int, mismodeling: Mismodeling | None) -> tuple[HardEvents, Table]:
    """Generate W events with a soft muon in a jet, decaying the W only in the events that pass."""
    partons, charge = W_PRODUCTION[process](rng, n)
    jets = reco_jets(rng, partons, mismodeling)
    keep = soft_muon_filter(jets, n)
    new_index = np.cumsum(keep) - 1
    partons = _take_events(partons, keep, new_index)
    hard = decay_w(rng, int(keep.sum()), partons, charge[keep])
    return hard, _restrict_jets(jets, keep, new_index)


def simulate_chunk(rng: np.random.Generator, *, process: str, n: int, mismodeling: Mismodeling | None,
                   is_data: bool, soft_muon: bool) -> Chunk:
    """Generate ``n`` events of ``process`` and build every PFNano branch.

    ``mismodeling`` is applied when given (pseudo-data). With ``soft_muon`` only events
    with a reconstructed muon inside a jet are kept; ``Chunk.n_generated`` still counts all.
    The filter runs right after the jet kinematics, before any jet contents are built, and
    for W processes before the W decay.
    """
    if soft_muon and process in W_PRODUCTION:
        hard, jets = _filtered_w_events(rng, process, n, mismodeling)
    else:
        hard = sample_process(process, rng, n)
        jets = reco_jets(rng, hard.partons, mismodeling)
        if soft_muon:
            keep = soft_muon_filter(jets, hard.n)
            hard, new_index = _restrict(hard, keep)
            jets = _restrict_jets(jets, keep, new_index)
    n_events = hard.n
    pv = ev.primary_vertices(rng, n_events)
    cands = build_constituents(rng, jets, pv["PV_npvs"], mismodeling)
    add_candidate_btag(cands, jets)
    svs = build_vertices(rng, jets, cands, mismodeling)
    muons = build_leptons(rng, hard.leptons, cands, jets, 13)
    electrons = build_leptons(rng, hard.leptons, cands, jets, 11)
    chunk = Chunk(n_events=n_events, n_generated=n)
    chunk.scalars.update(pv)
    chunk.scalars.update(ev.missing_et(rng, hard.met_x, hard.met_y, jets, n_events))
    chunk.scalars.update(ev.triggers(rng, muons, electrons, n_events))
    chunk.scalars.update(ev.filters(rng, n_events))
    _jet_collections(chunk, jets, cands, svs, muons, electrons, is_data)
    _lepton_collections(chunk, jets, muons, electrons)
    _placeholder_collections(chunk, is_data)
    if is_data:
        chunk.truth_flavour = jets["hadron_flavour"].copy()
    else:
        chunk.scalars["genWeight"] = np.ones(n_events)
    return chunk


def _counts(parent: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(parent, minlength=n)


def _jet_collections(chunk: Chunk, jets: Table, cands: Table, svs: Table, muons: Table, electrons: Table, is_data: bool) -> None:
    n = chunk.n_events
    jet_event = jets["event"]
    n_jets_event = _counts(jet_event, n)
    _, mu1, mu2, n_mu = jet_lepton_indices(muons, jets, n)
    _, el1, el2, n_el = jet_lepton_indices(electrons, jets, n)
    deepcsv = deepcsv_variables(cands, svs, jets)
    n_charged = np.bincount(cands["jet"][cands["charged"]], minlength=len(jets))
    prob = deepjet_probabilities(deepcsv, n_soft_leptons=n_mu + n_el, n_charged=n_charged, raw_pt=jets["raw_pt"])
    n_const = _counts(cands["jet"], len(jets))
    fractions = _energy_fractions(cands, jets)
    # Jet mass about 12 % of the pt, spread by a function of phi to avoid another random draw.
    mass_fraction = 0.12 + 0.04 * np.cos(jets["phi"] * 7.0)
    fields = {
        "pt": jets["pt"], "eta": jets["eta"], "phi": jets["phi"], "mass": jets["pt"] * mass_fraction,
        "rawFactor": jets["raw_factor"], "area": np.full(len(jets), 0.5),
        "jetId": np.full(len(jets), 6), "puId": np.where(jets["pt"] > 50, 0, 7),
        "muonIdx1": mu1, "muonIdx2": mu2, "electronIdx1": el1, "electronIdx2": el2,
        "nMuons": n_mu, "nElectrons": n_el, "nConstituents": n_const, **fractions,
        **stored_discriminators(prob), **{f"DeepCSV_{k}": v for k, v in deepcsv.items()},
    }
    if not is_data:
        flav = jets["hadron_flavour"]
        fields.update(hadronFlavour=flav, partonFlavour=jets["parton_flavour"],
                      nBHadrons=(flav == 5).astype(np.int32), nCHadrons=(flav == 4).astype(np.int32))
    chunk.collections["Jet"] = (n_jets_event, fields)
    _candidate_collections(chunk, jets, cands)
    _vertex_collections(chunk, jets, svs)


#: Energy-fraction branches of Jet and the |pdgId| of the candidates they sum.
ENERGY_FRACTIONS = (("muEF", 13), ("chEmEF", 11), ("neEmEF", 22), ("chHEF", 211), ("neHEF", 130))


def _energy_fractions(cands: Table, jets: Table) -> dict[str, np.ndarray]:
    jet = cands["jet"]
    n_jets = len(jets)
    n_kinds = len(ENERGY_FRACTIONS) + 1
    kind_of_pdg = np.full(212, len(ENERGY_FRACTIONS))
    for kind, (_, pdg) in enumerate(ENERGY_FRACTIONS):
        kind_of_pdg[pdg] = kind
    # One weighted histogram over (jet, kind) instead of one per fraction.
    pdg = np.abs(cands["pdgId"])
    kind = np.where(pdg < len(kind_of_pdg), kind_of_pdg[np.minimum(pdg, len(kind_of_pdg) - 1)], len(ENERGY_FRACTIONS))
    sums = np.bincount(jet * n_kinds + kind, cands["pt"], minlength=n_jets * n_kinds).reshape(n_jets, n_kinds)
    total = np.maximum(sums.sum(axis=1), 1e-6)
    return {name: sums[:, kind] / total for kind, (name, _) in enumerate(ENERGY_FRACTIONS)}


def _candidate_collections(chunk: Chunk, jets: Table, cands: Table) -> None:
    n = chunk.n_events
    event = jets["event"][cands["jet"]]
    counts = _counts(event, n)
    jet_local = local_index(jets["event"], n)
    pf_index = local_index(event, n)
    chunk.collections["PFCands"] = (counts, {
        k: cands[k] for k in ("pt", "eta", "phi", "mass", "charge", "pdgId", "d0", "d0Err", "dz", "dzErr", "puppiWeight",
                              "puppiWeightNoLep", "trkChi2", "vtxChi2", "lostInnerHits", "pvAssocQuality", "trkQuality")
    })
    chunk.collections["JetPFCands"] = (counts, {
        "pt": cands["pt"], "btagEtaRel": cands["btagEtaRel"], "btagPtRatio": cands["btagPtRatio"],
        "btagPParRatio": cands["btagPParRatio"], "btagSip3dVal": cands["sip3d"], "btagSip3dSig": cands["sip3d_sig"],
        "btagJetDistVal": cands["jet_distance"], "pFCandsIdx": pf_index, "jetIdx": jet_local[cands["jet"]],
    })


def _vertex_collections(chunk: Chunk, jets: Table, svs: Table) -> None:
    n = chunk.n_events
    event = jets["event"][svs["jet"]]
    counts = _counts(event, n)
    pv_x, pv_y, pv_z = (np.repeat(chunk.scalars[f"PV_{c}"], counts) for c in "xyz")
    theta_eta, phi = svs["eta"], svs["phi"]
    direction = np.stack([np.cos(phi), np.sin(phi), np.sinh(theta_eta)], axis=1) / np.cosh(theta_eta)[:, None]
    chunk.collections["SV"] = (counts, {
        "pt": svs["pt"], "eta": svs["eta"], "phi": svs["phi"], "mass": svs["mass"], "ntracks": svs["ntracks"],
        "chi2": svs["normchi2"], "ndof": svs["ndof"], "dlen": svs["d3d"], "dlenSig": svs["d3dsig"], "dxy": svs["dxy"],
        "dxySig": svs["dxysig"], "pAngle": np.arccos(np.clip(svs["costhetasvpv"], -1, 1)),
        "x": pv_x + svs["d3d"] * direction[:, 0], "y": pv_y + svs["d3d"] * direction[:, 1],
        "z": pv_z + svs["d3d"] * direction[:, 2],
    })
    fields = {k: svs[k] for k in ("mass", "pt", "ntracks", "chi2", "normchi2", "dxy", "dxysig", "d3d", "d3dsig",
                                  "costhetasvpv", "phirel", "ptrel", "deltaR")}
    fields["enration"] = svs["enratio"]
    fields["jetIdx"] = local_index(jets["event"], n)[svs["jet"]]
    fields["sVIdx"] = local_index(event, n)
    chunk.collections["JetSVs"] = (counts, fields)


def _lepton_collections(chunk: Chunk, jets: Table, muons: Table, electrons: Table) -> None:
    n = chunk.n_events
    for name, table, mass in (("Muon", muons, MUON_MASS), ("Electron", electrons, ELECTRON_MASS)):
        jet_index, *_ = jet_lepton_indices(table, jets, n)
        m = len(table["pt"])
        pdg = -(13 if name == "Muon" else 11) * table["charge"]
        fields = {
            "pt": table["pt"], "eta": table["eta"], "phi": table["phi"], "mass": np.full(m, mass),
            "charge": table["charge"], "pdgId": pdg, "dxy": table["dxy"], "dxyErr": table["dxyErr"], "dz": table["dz"],
            "dzErr": table["dzErr"], "ip3d": table["ip3d"], "sip3d": table["sip3d"], "jetIdx": jet_index,
            ("fsrPhotonIdx" if name == "Muon" else "photonIdx"): np.full(m, -1),
        }
        if name == "Muon":
            fields.update(pfRelIso04_all=table["iso"], pfRelIso03_all=table["iso"] * 0.8, tightId=table["tightId"],
                          mediumId=table["mediumId"], looseId=np.ones(m, bool), softId=np.ones(m, bool),
                          isGlobal=np.ones(m, bool), isTracker=np.ones(m, bool), isPFcand=np.ones(m, bool))
        else:
            fields.update(pfRelIso03_all=table["iso"], miniPFRelIso_all=table["iso"] * 0.9,
                          mvaFall17V2Iso_WP80=table["mvaIso_WP80"], mvaFall17V2Iso_WP90=table["mvaIso_WP90"],
                          cutBased=table["cutBased"], convVeto=np.ones(m, bool), lostHits=np.zeros(m, np.uint8))
        chunk.collections[name] = (_counts(table["event"], n), fields)


#: Collections that the generator does not simulate, written empty (zero entries per event)
#: with their index branches, so coffea's NanoAOD schemas find every cross-reference they
#: expect. The generator-level ones are left out of pseudo-data, which carry no generator
#: information; coffea then warns about them exactly as for real collision data.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "Photon": ("pt", "eta", "phi", "electronIdx", "jetIdx"),
    "FsrPhoton": ("pt", "eta", "phi", "muonIdx"),
    "LowPtElectron": ("pt", "eta", "phi", "mass", "charge", "electronIdx", "photonIdx"),
    "Tau": ("pt", "eta", "phi", "mass", "charge", "jetIdx"),
    "FatJet": ("pt", "eta", "phi", "mass", "subJetIdx1", "subJetIdx2", "electronIdx3SJ", "muonIdx3SJ"),
    "SubJet": ("pt", "eta", "phi", "mass", "subGenJetAK8Idx"),
    "FatJetPFCands": ("pt", "jetIdx", "pFCandsIdx"),
    "FatJetSVs": ("mass", "jetIdx", "sVIdx"),
}
GENERATOR_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "SubGenJetAK8": ("pt", "eta", "phi", "mass"),
    "GenJetSVs": ("mass", "jetIdx", "sVIdx"),
    "GenFatJetSVs": ("mass", "jetIdx", "sVIdx"),
}


def _placeholder_collections(chunk: Chunk, is_data: bool) -> None:
    zero = np.zeros(chunk.n_events, dtype=np.int64)
    placeholders = dict(PLACEHOLDERS) if is_data else {**PLACEHOLDERS, **GENERATOR_PLACEHOLDERS}
    for name, fields in placeholders.items():
        chunk.collections[name] = (zero, {f: np.zeros(0) for f in fields})
