"""Tagging variables computed from the generated constituents and vertices.

Per candidate: the ``JetPFCands_btag*`` quantities relative to the jet axis (CMSSW's
``TrackInfoBuilder`` definitions: ``ptRatio = sin(alpha)``, ``pParRatio = cos(alpha)``,
``etaRel = 0.5 ln((p + p_par) / (p - p_par))``). Per jet: the ``Jet_DeepCSV_*`` inputs, from
the selected tracks (charged, pt > 1 GeV, distance to the jet axis below 0.07 cm, decay
length below 5 cm) sorted by descending 2D impact-parameter significance. Missing values
are -999 as in NanoAOD.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate.kinematics import wrap_phi
from advcalib.generate.table import Table, local_index, offsets, segment_rank

MISSING = -999.0
N_TRACKS, N_ETA_REL = 6, 4
CHARM_MASS = 1.5
PION_MASS = 0.13957


def add_candidate_btag(cands: Table, jets: Table) -> None:
    """Add ``btagEtaRel``, ``btagPtRatio``, ``btagPParRatio`` and ``ptrel`` to charged candidates (0 for neutrals).

    The angle ``alpha`` between track and jet axis follows from pt, eta, phi alone:
    ``cos(alpha) = (cos(dphi) + sinh(eta_jet) sinh(eta)) / (cosh(eta_jet) cosh(eta))``.
    """
    n = len(cands["jet"])
    charged = np.flatnonzero(cands["charged"])
    jet = cands["jet"][charged]
    eta = cands["eta"][charged]
    jet_eta = jets["eta"][jet]
    p = cands["pt"][charged] * np.cosh(eta)
    cos_a = (np.cos(jets["phi"][jet] - cands["phi"][charged]) + np.sinh(jet_eta) * np.sinh(eta)) / (np.cosh(jet_eta) * np.cosh(eta))
    cos_a = np.clip(cos_a, -1.0, 1.0)
    sin_a = np.sqrt(1.0 - cos_a**2)
    ppar = p * cos_a
    eta_rel = 0.5 * np.log(np.maximum(p + ppar, 1e-9) / np.maximum(p - ppar, 1e-9))
    columns = {"btagEtaRel": eta_rel, "btagPtRatio": sin_a, "btagPParRatio": cos_a, "ptrel": p * sin_a}
    for name, values in columns.items():
        full = np.zeros(n)
        full[charged] = values
        cands[name] = full


def _slot_positions(jet: np.ndarray, rank: np.ndarray, n_jets: int, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries that fit into ``n_slots`` slots per jet, and their flat positions in a ``[n_slots, n_jets]`` array."""
    fits = np.flatnonzero(rank < n_slots)
    return fits, rank[fits] * n_jets + jet[fits]


def _slots(positions: tuple[np.ndarray, np.ndarray], values: np.ndarray, n_jets: int, n_slots: int) -> np.ndarray:
    """Values per slot, ``[n_slots, n_jets]`` (one contiguous row per slot), MISSING where a jet has fewer entries."""
    fits, flat = positions
    out = np.full(n_slots * n_jets, MISSING)
    out[flat] = values[fits]
    return out.reshape(n_slots, n_jets)


def _running_sums(jet: np.ndarray, cands: Table, n_jets: int) -> np.ndarray:
    """Four-vector sum of the first k tracks of each jet (pion mass), for every k, ``[N, 4]``."""
    pt, eta, phi = cands["pt"], cands["eta"], cands["phi"]
    # Row 0 stays zero, so a jet's running sum is the cumulative sum minus the row before its first track.
    total = np.zeros((len(jet) + 1, 4))
    total[1:, 0] = pt * np.cos(phi)
    total[1:, 1] = pt * np.sin(phi)
    total[1:, 2] = pt * np.sinh(eta)
    total[1:, 3] = np.sqrt((pt * np.cosh(eta)) ** 2 + PION_MASS**2)
    np.cumsum(total, axis=0, out=total)
    start = offsets(np.bincount(jet, minlength=n_jets))[:-1]
    return total[1:] - total[start[jet]]


def _mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0, None))


def _delta_r_to_jet(p4: np.ndarray, jets: Table, jet: np.ndarray) -> np.ndarray:
    pt = np.hypot(p4[:, 0], p4[:, 1])
    eta = np.arcsinh(p4[:, 2] / np.maximum(pt, 1e-9))
    phi = np.arctan2(p4[:, 1], p4[:, 0])
    dphi = wrap_phi(phi - jets["phi"][jet])
    return np.hypot(eta - jets["eta"][jet], dphi)


def deepcsv_variables(cands: Table, svs: Table, jets: Table) -> dict[str, np.ndarray]:
    """Compute every ``Jet_DeepCSV_*`` variable (names without the prefix) for all jets."""
    n_jets = len(jets)
    sel = cands["charged"] & (cands["pt"] > 1.0) & (cands["jet_distance"] > -0.07) & (cands["decay_length"] < 5.0)
    index = np.flatnonzero(sel)
    index = index[segment_rank(cands["jet"][index], cands["sip2d_sig"][index])]
    needed = ("jet", "pt", "eta", "phi", "sip2d", "sip2d_sig", "sip3d", "sip3d_sig", "ptrel", "btagPtRatio",
              "btagEtaRel", "delta_r", "jet_distance", "decay_length")
    tracks = Table({k: cands[k][index] for k in needed})
    jet = tracks["jet"]
    rank = local_index(jet, n_jets)
    n_sel = np.bincount(jet, minlength=n_jets)
    out: dict[str, np.ndarray] = {"jetNSelectedTracks": n_sel}
    columns = {"trackSip2dSig": "sip2d_sig", "trackSip3dSig": "sip3d_sig", "trackPtRel": "ptrel",
               "trackPtRatio": "btagPtRatio", "trackDeltaR": "delta_r", "trackJetDistVal": "jet_distance",
               "trackDecayLenVal": "decay_length"}
    positions = _slot_positions(jet, rank, n_jets, N_TRACKS)
    for name, column in columns.items():
        slots = _slots(positions, tracks[column], n_jets, N_TRACKS)
        out.update({f"{name}_{i}": slots[i] for i in range(N_TRACKS)})
    running = _running_sums(jet, tracks, n_jets)
    out.update(_above_charm(jet, rank, tracks, running, n_sel, n_jets))
    out.update(_track_sums(jet, tracks, running, n_sel, jets))
    out.update(_vertex_variables(jet, rank, tracks, running, svs, jets))
    return out


def _above_charm(jet, rank, tracks, running, n_sel, n_jets) -> dict[str, np.ndarray]:
    above = _mass(running) > CHARM_MASS
    first = np.full(n_jets, np.iinfo(np.int64).max)
    np.minimum.at(first, jet[above], rank[above])
    out = {}
    pick = above & (rank == first[jet])
    for name, column in (("Sip2dVal", "sip2d"), ("Sip2dSig", "sip2d_sig"), ("Sip3dVal", "sip3d"), ("Sip3dSig", "sip3d_sig")):
        values = np.where(n_sel > 0, -1.0, MISSING)
        values[jet[pick]] = tracks[column][pick]
        out[f"track{name}AboveCharm"] = values
    return out


def _track_sums(jet, tracks, running, n_sel, jets) -> dict[str, np.ndarray]:
    n_jets = len(jets)
    last = np.zeros(n_jets, dtype=np.int64)
    has = n_sel > 0
    last[has] = offsets(n_sel)[1:][has] - 1
    total = running[last] if len(running) else np.zeros((n_jets, 4))
    pt_sum = np.hypot(total[:, 0], total[:, 1])
    energy_ratio = pt_sum / (jets["raw_pt"])
    delta_r = _delta_r_to_jet(total, jets, np.arange(n_jets)) if len(running) else np.zeros(n_jets)
    return {"trackSumJetEtRatio": np.where(has, energy_ratio, MISSING),
            "trackSumJetDeltaR": np.where(has, delta_r, MISSING),
            "trackJetPt": np.where(has, pt_sum, 0.0)}


def _vertex_variables(jet, rank, tracks, running, svs, jets) -> dict[str, np.ndarray]:
    n_jets = len(jets)
    n_sv = np.bincount(svs["jet"], minlength=n_jets)
    lead = np.zeros(n_jets, dtype=np.int64)
    lead[n_sv > 0] = offsets(n_sv)[:-1][n_sv > 0]
    has_sv = n_sv > 0
    displaced = tracks["sip2d_sig"] > 2.0
    n_displaced = np.bincount(jet[displaced], minlength=n_jets)
    category = np.where(has_sv, 0, np.where(n_displaced >= 2, 1, 2))
    # Pseudo-vertex: the running sum of the displaced tracks (they lead the sorted list).
    pseudo_index = offsets(np.bincount(jet, minlength=n_jets))[:-1] + np.maximum(n_displaced, 1) - 1
    pseudo = running[np.clip(pseudo_index, 0, max(len(running) - 1, 0))] if len(running) else np.zeros((n_jets, 4))
    pseudo_pt = np.hypot(pseudo[:, 0], pseudo[:, 1])
    take = lambda col: svs[col][lead] if len(svs["jet"]) else np.zeros(n_jets)  # noqa: E731
    out = {
        "vertexCategory": category.astype(float), "jetNSecondaryVertices": n_sv,
        "vertexMass": np.select([category == 0, category == 1], [take("mass"), _mass(pseudo)], MISSING),
        "vertexNTracks": np.select([category == 0, category == 1], [take("ntracks"), n_displaced], 0),
        "vertexEnergyRatio": np.select([category == 0, category == 1], [take("enratio"), pseudo_pt / jets["raw_pt"]], MISSING),
        "vertexJetDeltaR": np.select([category == 0, category == 1],
                                     [take("deltaR"), _delta_r_to_jet(pseudo, jets, np.arange(n_jets)) if len(running) else 0.0], MISSING),
    }
    for name, column in (("2dVal", "dxy"), ("2dSig", "dxysig"), ("3dVal", "d3d"), ("3dSig", "d3dsig")):
        out[f"flightDistance{name}"] = np.where(has_sv, take(column), MISSING)
    out.update(_eta_rel(jet, rank, tracks, np.where(category == 0, out["vertexNTracks"], 0), n_jets))
    return out


def _eta_rel(jet, rank, tracks, n_vertex_tracks, n_jets) -> dict[str, np.ndarray]:
    """etaRel of the vertex tracks (the leading ``ntracks`` tracks), in ascending order."""
    use = rank < n_vertex_tracks[jet]
    sub = tracks.take(np.flatnonzero(use))
    order = np.lexsort((sub["btagEtaRel"], sub["jet"]))
    sub = sub.take(order)
    sub_rank = local_index(sub["jet"], n_jets)
    slots = _slots(_slot_positions(sub["jet"], sub_rank, n_jets, N_ETA_REL), sub["btagEtaRel"], n_jets, N_ETA_REL)
    out = {f"trackEtaRel_{i}": slots[i] for i in range(N_ETA_REL)}
    out["jetNTracksEtaRel"] = np.bincount(sub["jet"], minlength=n_jets)
    return out
