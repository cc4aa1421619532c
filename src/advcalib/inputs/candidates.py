"""Charged and neutral candidate inputs derived from ``JetPFCands`` and ``PFCands``.

Definitions follow CMSSW ``RecoBTag/FeatureTools`` for packed candidates:
``ChargedCandidateConverter``, ``NeutralCandidateConverter``, ``TrackInfoBuilder`` and the
candidate loop of ``DeepFlavourTagInfoProducer`` (minimum pt 0.95 GeV, sort orders).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs.jets import JetSelection, RawJets, flat_field
from advcalib.inputs.numeric import (
    catch_infs_and_bound,
    count_per_row,
    delta_phi,
    delta_r,
    descending_key,
    rank_within_groups,
    scatter_slots,
)
from advcalib.inputs.vertices import SVDirections, min_delta_r_to_sv

#: Candidates below this pt [GeV] are ignored by ``DeepFlavourTagInfoProducer``.
MIN_CANDIDATE_PT = 0.95
#: Jet radius: start value of ``mindrsvpfcand`` and offset of ``drminsv``.
JET_RADIUS = 0.4
#: Charged-pion mass [GeV] that ``reco::btau::etaRel`` assigns to tracks.
PION_MASS = 0.13957
#: ``reco::TrackBase::loose`` as a quality mask: CMSSW's value for candidates without a track.
LOOSE_QUALITY = 1
#: Estimated transverse error of the primary-vertex position [cm], added in quadrature to
#: ``PFCands_d0Err``. PFNano stores no vertex covariance. Comparing the 2D IP of the tracks
#: that ``Jet_DeepCSV_trackSip2dSig_*`` also lists gives 3 to 5 micrometres per event on the
#: PFNano test file (high-pt multijet events); 3 micrometres is their typical value.
PV_TRANSVERSE_ERROR = 3e-4


@dataclass(frozen=True)
class Constituents:
    """Flat table of the jet constituents that belong to selected jets (pt >= 0.95 GeV)."""

    row: np.ndarray
    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    pdg_id: np.ndarray
    has_track: np.ndarray
    columns: dict[str, np.ndarray]  # further PFCands_* and JetPFCands_* columns, same rows

    def take(self, mask: np.ndarray) -> Constituents:
        return Constituents(
            row=self.row[mask],
            event=self.event[mask],
            pt=self.pt[mask],
            eta=self.eta[mask],
            phi=self.phi[mask],
            charge=self.charge[mask],
            pdg_id=self.pdg_id[mask],
            has_track=self.has_track[mask],
            columns={k: v[mask] for k, v in self.columns.items()},
        )


_PFCAND_COLUMNS = ("d0", "d0Err", "puppiWeight", "trkChi2", "pvAssocQuality", "trkQuality")
_JETPFCAND_COLUMNS = ("btagEtaRel", "btagPtRatio", "btagPParRatio", "btagSip3dVal", "btagSip3dSig", "btagJetDistVal")


def collect_constituents(events: ak.Array, selection: JetSelection) -> Constituents:
    """Join ``JetPFCands`` with ``PFCands`` and keep the constituents of selected jets."""
    links = events.JetPFCands
    event = np.repeat(np.arange(len(events)), ak.num(links, axis=1).to_numpy())
    rows = selection.rows_of(event, flat_field(links, "jetIdx", dtype=np.int64))
    pf_counts = ak.num(events.PFCands, axis=1).to_numpy()
    pf_offsets = np.r_[0, np.cumsum(pf_counts)[:-1]]
    cand_local = flat_field(links, "pFCandsIdx", dtype=np.int64)
    valid = (rows >= 0) & (cand_local >= 0) & (cand_local < pf_counts[event])
    cand = pf_offsets[event] + cand_local
    pf = events.PFCands
    pt = flat_field(pf, "pt")[cand[valid]] if valid.any() else np.zeros(0)
    keep = np.flatnonzero(valid)[pt >= MIN_CANDIDATE_PT]
    index = cand[keep]
    columns = {name: flat_field(pf, name)[index] for name in _PFCAND_COLUMNS}
    columns.update({name: flat_field(links, name)[keep] for name in _JETPFCAND_COLUMNS})
    return Constituents(
        row=rows[keep],
        event=event[keep],
        pt=flat_field(pf, "pt")[index],
        eta=flat_field(pf, "eta")[index],
        phi=flat_field(pf, "phi")[index],
        charge=flat_field(pf, "charge", dtype=np.int64)[index],
        pdg_id=flat_field(pf, "pdgId", dtype=np.int64)[index],
        # PFNano writes d0Err = -1 for candidates without track details.
        has_track=columns["d0Err"] > 0,
        columns=columns,
    )


def _kinematic_track_info(c: Constituents, jets: RawJets) -> dict[str, np.ndarray]:
    """``TrackInfoBuilder`` quantities computed from the candidate momentum and jet axis."""
    jet_eta, jet_phi = jets.eta[c.row], jets.phi[c.row]
    p = c.pt * np.cosh(c.eta)
    axis = np.stack([np.cos(jet_phi), np.sin(jet_phi), np.sinh(jet_eta)]) / np.cosh(jet_eta)
    mom = np.stack([c.pt * np.cos(c.phi), c.pt * np.sin(c.phi), c.pt * np.sinh(c.eta)])
    p_par = np.sum(axis * mom, axis=0)
    p_rel = np.sqrt(np.clip(p**2 - p_par**2, 0.0, None))
    energy = np.sqrt(p**2 + PION_MASS**2)
    eta_rel = 0.5 * np.log((energy + p_par) / (energy - p_par))
    return {"p": p, "eta_rel": eta_rel, "p_par": p_par, "p_rel": p_rel}


def signed_ip2d(c: Constituents, jets: RawJets) -> tuple[np.ndarray, np.ndarray]:
    """Signed transverse impact parameter and its significance (``IPTools``, straight line).

    The point of closest approach to the primary vertex lies at ``d0 * (-sin phi, cos phi)``
    from it. The IP takes the sign of that vector's projection on the jet axis.
    CMSSW's error combines the track and primary-vertex covariances; PFNano stores only the
    track part, so the vertex part is the estimate ``PV_TRANSVERSE_ERROR``.
    NOTE: the true vertex error varies by event and direction (3 to 5 micrometres on the
    test file), so significances of high-pt tracks can be off by a few per cent.
    """
    d0 = c.columns["d0"]
    projection = d0 * np.sin(jets.phi[c.row] - c.phi)
    value = np.where(projection >= 0, 1.0, -1.0) * np.abs(d0)
    value = np.where(c.has_track, value, 0.0)
    error = np.where(c.has_track, np.hypot(c.columns["d0Err"], PV_TRANSVERSE_ERROR), 1.0)
    return value, value / error


def _track_info(c: Constituents, jets: RawJets) -> dict[str, np.ndarray]:
    """``TrackInfoBuilder`` outputs: PFNano's stored values where the track exists.

    PFNano's ``JetPFCands_btag*`` hold ``TrackInfoBuilder`` results (0 without track
    details); CMSSW falls back to the candidate momentum then, as done here.
    """
    kin = _kinematic_track_info(c, jets)
    p = kin["p"]
    stored = c.columns
    track = c.has_track
    return {
        "eta_rel": np.where(track, stored["btagEtaRel"], kin["eta_rel"]),
        "pt_rel": np.where(track, stored["btagPtRatio"] * p, kin["p_rel"]),
        "p_par": np.where(track, stored["btagPParRatio"] * p, kin["p_par"]),
        "p_par_ratio": np.where(track, stored["btagPParRatio"], kin["p_par"] / p),
        "sip3d_val": np.where(track, stored["btagSip3dVal"], 0.0),
        "sip3d_sig": np.where(track, stored["btagSip3dSig"], 0.0),
        "jet_dist": np.where(track, stored["btagJetDistVal"], 0.0),
    }


def _charged_columns(c: Constituents, jets: RawJets, mindr: np.ndarray, sip2d: tuple) -> dict[str, np.ndarray]:
    info = _track_info(c, jets)
    sip2d_val, sip2d_sig = sip2d
    chi2 = np.where(c.has_track, c.columns["trkChi2"], -1.0)
    return {
        "Cpfcan_BtagPf_trackEtaRel": catch_infs_and_bound(info["eta_rel"], replace=0, low=-5, high=15),
        "Cpfcan_BtagPf_trackPtRel": catch_infs_and_bound(info["pt_rel"], replace=0, low=-1, high=4),
        "Cpfcan_BtagPf_trackPPar": catch_infs_and_bound(info["p_par"], replace=0, low=-1e5, high=1e5),
        "Cpfcan_BtagPf_trackDeltaR": catch_infs_and_bound(
            delta_r(c.eta, c.phi, jets.eta[c.row], jets.phi[c.row]), replace=0, low=-5, high=5
        ),
        "Cpfcan_BtagPf_trackPParRatio": catch_infs_and_bound(info["p_par_ratio"], replace=0, low=-10, high=100),
        "Cpfcan_BtagPf_trackSip2dVal": catch_infs_and_bound(sip2d_val, replace=0, low=-1, high=70),
        "Cpfcan_BtagPf_trackSip2dSig": catch_infs_and_bound(sip2d_sig, replace=0, low=-1, high=4e4),
        "Cpfcan_BtagPf_trackSip3dVal": catch_infs_and_bound(info["sip3d_val"], replace=0, low=-1, high=1e5),
        "Cpfcan_BtagPf_trackSip3dSig": catch_infs_and_bound(info["sip3d_sig"], replace=0, low=-1, high=4e4),
        "Cpfcan_BtagPf_trackJetDistVal": catch_infs_and_bound(info["jet_dist"], replace=0, low=-20, high=1),
        "Cpfcan_ptrel": catch_infs_and_bound(c.pt / jets.pt[c.row], replace=0, low=-1, high=0, offset=-1),
        "Cpfcan_drminsv": catch_infs_and_bound(mindr, replace=0, low=-JET_RADIUS, high=0, offset=-JET_RADIUS),
        "Cpfcan_VTX_ass": c.columns["pvAssocQuality"],
        "Cpfcan_puppiw": c.columns["puppiWeight"],
        "Cpfcan_chi2": catch_infs_and_bound(chi2, replace=300, low=-1, high=300),
        "Cpfcan_quality": np.where(c.has_track, c.columns["trkQuality"], LOOSE_QUALITY),
    }


def neutral_hadron_fraction(c: Constituents) -> np.ndarray:
    """Estimate of ``PackedCandidate::hcalFraction()``, which PFNano does not store.

    MiniAOD stores the HCAL fraction for neutral hadrons (pdgId 130, and 1 in the HF) and 0
    for photons (22) and HF electromagnetic deposits (2). NOTE: neutral hadrons are given 1,
    their most common value; a hadron whose cluster shares ECAL energy has less.
    """
    pdg = np.abs(c.pdg_id)
    return np.where((pdg == 130) | (pdg == 1), 1.0, 0.0)


def _neutral_columns(c: Constituents, jets: RawJets, mindr: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "Npfcan_ptrel": catch_infs_and_bound(c.pt / jets.pt[c.row], replace=0, low=-1, high=0, offset=-1),
        "Npfcan_deltaR": catch_infs_and_bound(
            delta_r(c.eta, c.phi, jets.eta[c.row], jets.phi[c.row]), replace=0, low=-0.6, high=0, offset=-0.6
        ),
        "Npfcan_isGamma": (np.abs(c.pdg_id) == 22).astype(np.float64),
        "Npfcan_HadFrac": neutral_hadron_fraction(c),
        "Npfcan_drminsv": catch_infs_and_bound(mindr, replace=0, low=-JET_RADIUS, high=0, offset=-JET_RADIUS),
        "Npfcan_puppiw": c.columns["puppiWeight"],
    }


def _to_slots(group: spec.InputGroup, c: Constituents, columns: dict, keys: tuple, n_rows: int) -> np.ndarray:
    features = np.stack([np.asarray(columns[name], dtype=np.float64) for name in group.names], axis=1)
    order, rank = rank_within_groups(c.row, *keys)
    return scatter_slots(c.row[order], rank, features[order], n_rows=n_rows, slots=group.slots)


def build_candidate_features(
    events: ak.Array, selection: JetSelection, jets: RawJets, directions: SVDirections
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Charged [N,25,16] and neutral [N,25,6] inputs with the candidate counts per jet.

    Sort orders are those of ``DeepFlavourTagInfoProducer`` (``SortingClass::compareByABCInv``).
    Charged candidates go by descending 2D IP significance, then ascending Delta R to the
    nearest SV, then descending pt ratio. Neutral candidates go by ascending Delta R to the
    nearest SV, then descending pt ratio. Counts are taken before the truncation to 25.
    """
    n_rows = len(selection)
    c = collect_constituents(events, selection)
    mindr = min_delta_r_to_sv(
        directions, event=c.event, eta=c.eta, phi=c.phi, n_events=len(events), start=JET_RADIUS
    )
    ptratio = c.pt / jets.pt[c.row]
    charged = c.charge != 0
    ch = c.take(charged)
    sip2d = signed_ip2d(ch, jets)
    cpf = _to_slots(
        spec.CHARGED,
        ch,
        _charged_columns(ch, jets, mindr[charged], sip2d),
        (descending_key(sip2d[1]), descending_key(-mindr[charged]), descending_key(ptratio[charged])),
        n_rows,
    )
    ne = c.take(~charged)
    npf = _to_slots(
        spec.NEUTRAL,
        ne,
        _neutral_columns(ne, jets, mindr[~charged]),
        (descending_key(-mindr[~charged]), descending_key(ptratio[~charged])),
        n_rows,
    )
    return cpf, npf, count_per_row(ch.row, n_rows=n_rows), count_per_row(ne.row, n_rows=n_rows)
