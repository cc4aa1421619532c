"""Selection of the jets whose inputs are built, and the flat jet quantities they need."""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np


@dataclass(frozen=True)
class JetSelection:
    """The selected jets as flat rows, with maps from collection indices to rows.

    ``global_index`` numbers every jet of the events array consecutively (event by event),
    the numbering that cross-reference branches such as ``JetPFCands_jetIdx`` resolve to.
    """

    event_index: np.ndarray  # int64 [N]
    jet_index: np.ndarray  # int64 [N]
    global_index: np.ndarray  # int64 [N]
    jet_offsets: np.ndarray  # int64 [n_events], global index of each event's first jet
    n_jets_total: int

    def __len__(self) -> int:
        return int(self.event_index.size)

    def rows_of(self, event: np.ndarray, jet: np.ndarray) -> np.ndarray:
        """Row of each (event, jet) pair, -1 where the jet is not selected or out of range.

        A jet selected twice maps to its first row; callers copy that row to the others
        with :meth:`duplicate_rows`.
        """
        n_jets = np.diff(np.r_[self.jet_offsets, self.n_jets_total])
        valid = (jet >= 0) & (jet < n_jets[event])
        lookup = np.full(self.n_jets_total, -1, dtype=np.int64)
        first = np.unique(self.global_index, return_index=True)[1]
        lookup[self.global_index[first]] = first
        rows = np.full(np.shape(event), -1, dtype=np.int64)
        rows[valid] = lookup[self.jet_offsets[event[valid]] + jet[valid]]
        return rows

    def duplicate_rows(self) -> np.ndarray:
        """For every row, the first row that selects the same jet."""
        _, first, inverse = np.unique(self.global_index, return_index=True, return_inverse=True)
        return first[inverse]


def select_jets(events: ak.Array, jet_index: ak.Array | None) -> JetSelection:
    """Resolve ``jet_index`` (jagged indices into ``events.Jet``; None = all jets) to flat rows.

    Raises ``IndexError`` naming the event when an index points beyond that event's jets,
    because silently dropping such a jet would misalign the rows with the caller's selection.
    """
    n_jets = ak.num(events.Jet, axis=1).to_numpy().astype(np.int64)
    if jet_index is None:
        jet_index = ak.local_index(events.Jet, axis=1)
    if len(jet_index) != len(events):
        raise ValueError(
            f"jet_index has {len(jet_index)} entries but the events array has {len(events)}; "
            "pass one list of jet indices per event"
        )
    counts = ak.num(jet_index, axis=1).to_numpy().astype(np.int64)
    local = ak.to_numpy(ak.flatten(jet_index, axis=1)).astype(np.int64)
    event_index = np.repeat(np.arange(len(events), dtype=np.int64), counts)
    bad = (local < 0) | (local >= n_jets[event_index])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise IndexError(
            f"jet_index {local[first]} is out of range for event {event_index[first]}, "
            f"which has {n_jets[event_index[first]]} jets; use indices into events.Jet"
        )
    offsets = np.r_[0, np.cumsum(n_jets)[:-1]].astype(np.int64)
    return JetSelection(
        event_index=event_index,
        jet_index=local,
        global_index=offsets[event_index] + local,
        jet_offsets=offsets,
        n_jets_total=int(n_jets.sum()),
    )


def flat_field(collection: ak.Array, name: str, *, dtype: type = np.float64) -> np.ndarray:
    """Return one field of a jagged collection as a flat numpy array."""
    return ak.to_numpy(ak.flatten(collection[name], axis=1)).astype(dtype)


@dataclass(frozen=True)
class RawJets:
    """Uncorrected kinematics of the selected jets, as CMSSW's DeepJet producers see them."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    energy: np.ndarray
    raw_scale: np.ndarray  # 1 - Jet_rawFactor: raw over corrected four-momentum


def raw_jets(events: ak.Array, selection: JetSelection) -> RawJets:
    """Uncorrected pt and energy, ``Jet_pt * (1 - Jet_rawFactor)``, of the selected jets.

    CMSSW's ``pfDeepFlavourTagInfos`` runs on the uncorrected jet (``JetConverter``), so its
    pt, energy and every ratio to them use the raw four-momentum. The direction equals the
    corrected jet's.
    """
    jets = events.Jet
    idx = selection.global_index
    scale = 1.0 - flat_field(jets, "rawFactor")[idx]
    pt = flat_field(jets, "pt")[idx] * scale
    eta = flat_field(jets, "eta")[idx]
    mass = flat_field(jets, "mass")[idx] * scale
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    return RawJets(pt=pt, eta=eta, phi=flat_field(jets, "phi")[idx], energy=energy, raw_scale=scale)
