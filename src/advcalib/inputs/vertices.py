"""Secondary-vertex inputs and the SV directions used for the candidates' ``drminsv``."""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs.jets import JetSelection, RawJets, flat_field
from advcalib.inputs.numeric import count_per_row, delta_phi, rank_within_groups, scatter_slots


@dataclass(frozen=True)
class SVDirections:
    """Flat momentum directions of the secondary vertices of each event."""

    event: np.ndarray
    eta: np.ndarray
    phi: np.ndarray

    def offsets(self, n_events: int) -> tuple[np.ndarray, np.ndarray]:
        """First position and number of SVs per event (``event`` is non-decreasing)."""
        counts = np.bincount(self.event, minlength=n_events)[:n_events]
        return np.r_[0, np.cumsum(counts)[:-1]], counts


def _jetsv_event(events: ak.Array) -> np.ndarray:
    counts = ak.num(events.JetSVs, axis=1).to_numpy()
    return np.repeat(np.arange(len(events)), counts)


def _unlisted_sv_directions(events: ak.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions of the jet SVs that the ``SV`` table lacks (``JetSVs_sVIdx == -1``).

    PFNano stores them only relative to their jet: ``phirel`` and ``|Delta R| - 0.5``, which
    leave the sign of ``eta_sv - eta_jet`` open. The sign is taken from the flight direction:
    ``|sinh(eta)| = sqrt(d3d^2 - dxy^2) / dxy`` selects which of the two solutions has the right
    ``|eta|``. NOTE: the flight direction is only a proxy for the momentum direction, so near
    ``eta = 0`` the sign may be wrong; it only matters when such a vertex is the nearest one.
    """
    svs = events.JetSVs
    event = _jetsv_event(events)
    unlisted = flat_field(svs, "sVIdx", dtype=np.int64) < 0
    jet_global = np.r_[0, np.cumsum(ak.num(events.Jet, axis=1).to_numpy())[:-1]][event] + flat_field(
        svs, "jetIdx", dtype=np.int64
    )
    jet_eta = flat_field(events.Jet, "eta")[jet_global]
    jet_phi = flat_field(events.Jet, "phi")[jet_global]
    dphi = flat_field(svs, "phirel")
    dr = flat_field(svs, "deltaR") + 0.5
    deta = np.sqrt(np.clip(dr**2 - dphi**2, 0.0, None))
    dxy = flat_field(svs, "dxy")
    dz = np.sqrt(np.clip(flat_field(svs, "d3d") ** 2 - dxy**2, 0.0, None))
    flight_abs_eta = np.arcsinh(np.divide(dz, dxy, out=np.zeros_like(dz), where=dxy > 0))
    plus, minus = jet_eta + deta, jet_eta - deta
    eta = np.where(np.abs(np.abs(plus) - flight_abs_eta) <= np.abs(np.abs(minus) - flight_abs_eta), plus, minus)
    phi = jet_phi + dphi
    return event[unlisted], eta[unlisted], phi[unlisted]


def sv_directions(events: ak.Array) -> SVDirections:
    """Momentum directions of all secondary vertices known to the file, per event.

    CMSSW takes ``drminsv`` over every vertex of ``slimmedSecondaryVertices``; PFNano keeps
    the ``SV`` table (a selection of them) plus the in-jet vertices of ``JetSVs``.
    NOTE: vertices outside every jet cone that the ``SV`` table drops are missing here.
    """
    sv_counts = ak.num(events.SV, axis=1).to_numpy()
    listed_event = np.repeat(np.arange(len(events)), sv_counts)
    extra_event, extra_eta, extra_phi = _unlisted_sv_directions(events)
    event = np.r_[listed_event, extra_event]
    eta = np.r_[flat_field(events.SV, "eta"), extra_eta]
    phi = np.r_[flat_field(events.SV, "phi"), extra_phi]
    order = np.argsort(event, kind="stable")
    return SVDirections(event=event[order].astype(np.int64), eta=eta[order], phi=phi[order])


def min_delta_r_to_sv(
    directions: SVDirections, *, event: np.ndarray, eta: np.ndarray, phi: np.ndarray, n_events: int, start: float
) -> np.ndarray:
    """CMSSW ``mindrsvpfcand``: smallest Delta R from each object to an SV of its event, at most ``start``."""
    offsets, counts = directions.offsets(n_events)
    per_object = counts[event]
    pair_object = np.repeat(np.arange(event.size), per_object)
    first = np.repeat(np.cumsum(per_object) - per_object, per_object)
    pair_sv = offsets[event[pair_object]] + np.arange(pair_object.size) - first
    deta = eta[pair_object] - directions.eta[pair_sv]
    dr = np.hypot(deta, delta_phi(phi[pair_object], directions.phi[pair_sv]))
    result = np.full(event.size, start, dtype=np.float64)
    np.minimum.at(result, pair_object, dr)
    return result


def build_vertex_features(
    events: ak.Array, selection: JetSelection, jets: RawJets
) -> tuple[np.ndarray, np.ndarray]:
    """SV inputs [N, 4, 12] and the number of in-cone SVs per jet from ``JetSVs``.

    PFNano's ``JetSVs`` table holds, per jet, the vertices within Delta R < 0.4 of the jet
    axis in the order of CMSSW's ``sv_vertex_comparator`` (descending 2D flight-distance
    significance), with ``deltaR``, ``normchi2``, ``dxysig`` and ``d3dsig`` already bounded as
    in ``SecondaryVertexConverter``. Only ``enratio`` needs a change: PFNano divides by the
    corrected jet energy, DeepJet by the raw one.
    """
    svs = events.JetSVs
    event = _jetsv_event(events)
    rows = selection.rows_of(event, flat_field(svs, "jetIdx", dtype=np.int64))
    keep = rows >= 0
    rows = rows[keep]
    columns = {
        "sv_pt": flat_field(svs, "pt"),
        "sv_deltaR": flat_field(svs, "deltaR"),
        "sv_mass": flat_field(svs, "mass"),
        "sv_ntracks": flat_field(svs, "ntracks"),
        "sv_chi2": flat_field(svs, "chi2"),
        "sv_normchi2": flat_field(svs, "normchi2"),
        "sv_dxy": flat_field(svs, "dxy"),
        "sv_dxysig": flat_field(svs, "dxysig"),
        "sv_d3d": flat_field(svs, "d3d"),
        "sv_d3dsig": flat_field(svs, "d3dsig"),
        "sv_costhetasvpv": flat_field(svs, "costhetasvpv"),
        "sv_enratio": flat_field(svs, "enration"),
    }
    features = np.stack([columns[name][keep] for name in spec.VERTEX.names], axis=1)
    features[:, spec.VERTEX.index("sv_enratio")] /= jets.raw_scale[rows]
    # The table is already in CMSSW order, so a stable sort by row keeps it.
    order, rank = rank_within_groups(rows)
    n_rows = len(selection)
    dense = scatter_slots(rows[order], rank, features[order], n_rows=n_rows, slots=spec.VERTEX.slots)
    return dense, count_per_row(rows, n_rows=n_rows)
