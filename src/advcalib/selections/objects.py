"""Object definitions shared by the selections: triggers, leptons, jets, soft muons.

Each function is a pure columnar function of NanoEvents collections (or hand-built
awkward arrays with the coffea candidate behaviour) and returns a mask of the same
jagged shape as its input collection. Thresholds come in from the cut tables.

Several selections need the same objects (the isolated leptons of a threshold, the good
jets, the soft-muon matching of the charm and bottom regions). Inside
``shared_objects(events)`` each of them is computed once for that chunk. ``shared``
stores a value under a key made of the function's name and every cut value it reads.
Selections with other thresholds therefore get their own entry, and no result changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import awkward as ak
import numpy as np

from advcalib.selections.cuts import CutTable

logger = logging.getLogger(__name__)

#: The events of the active ``shared_objects`` block and the values computed for them.
_SHARED: ContextVar[tuple[Any, dict[str, Any]] | None] = ContextVar("advcalib_shared_objects", default=None)


@contextlib.contextmanager
def shared_objects(events: Any) -> Iterator[None]:
    """Share the objects that :func:`shared` computes for ``events`` inside the block.

    The values are dropped when the block ends, so one chunk's objects never reach the
    next. Calls for other events objects compute as if no block were open. The context
    variable keeps blocks of concurrent threads apart.
    """
    token = _SHARED.set((events, {}))
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared(events: Any, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Return ``compute()``, computed once per ``key`` inside ``shared_objects(events)``.

    ``key`` must contain every cut value that ``compute`` reads, because two calls with
    the same key get the same object. Keys are compared by their ``repr``, so cut values
    that cannot be hashed, such as lists, work too.
    """
    active = _SHARED.get()
    if active is None or active[0] is not events:
        return compute()
    values = active[1]
    text = repr(key)
    if text not in values:
        values[text] = compute()
    return values[text]


class MissingInputError(KeyError):
    """A branch or trigger a selection needs is absent from the input file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def source_name(events: Any) -> str:
    """File name of a NanoEvents chunk, for messages; ``<events>`` for hand-built arrays."""
    try:
        metadata = events.metadata
    except AttributeError:
        return "<events>"
    return str(metadata.get("filename", "<events>")) if isinstance(metadata, dict) else "<events>"


def collection(events: Any, name: str) -> ak.Array:
    """``events[name]``, or :class:`MissingInputError` naming the file."""
    if name not in events.fields:
        raise MissingInputError(f"{source_name(events)}: collection {name!r} not found; the selections need NanoAOD {name}_* branches")
    return events[name]


def trigger_mask(events: Any, triggers: tuple[str, ...], *, context: str) -> ak.Array:
    """OR of the HLT paths among ``triggers`` that the file has.

    Paths missing from the file are skipped with one warning per file. When none of them
    is present, :class:`MissingInputError` names the file and the paths.
    """
    hlt = collection(events, "HLT")
    present = [name for name in triggers if name.removeprefix("HLT_") in hlt.fields]
    missing = tuple(name for name in triggers if name not in present)
    if not present:
        raise MissingInputError(
            f"{source_name(events)}: none of the {context} triggers {', '.join(triggers)} is in the file; "
            "use a file with one of them or change the trigger list in the cut table"
        )
    if missing:
        _warn_missing_triggers(source_name(events), context, missing)
    passed = hlt[present[0].removeprefix("HLT_")]
    for name in present[1:]:
        passed = passed | hlt[name.removeprefix("HLT_")]
    return passed


@functools.lru_cache(maxsize=256)
def _warn_missing_triggers(source: str, context: str, missing: tuple[str, ...]) -> None:
    logger.warning("%s: %s triggers %s not in the file; using the others", source, context, ", ".join(missing))


def shared_isolated_muons(events: Any, cuts: CutTable, *, pt: float) -> ak.Array:
    """:func:`isolated_muons` of ``events.Muon``, shared inside :func:`shared_objects`."""
    muons = collection(events, "Muon")
    key = ("isolated_muons", pt, cuts["muon_abseta"], cuts["muon_iso"])
    return shared(events, key, lambda: isolated_muons(muons, cuts, pt=pt))


def shared_isolated_electrons(events: Any, cuts: CutTable, *, pt: float) -> ak.Array:
    """:func:`isolated_electrons` of ``events.Electron``, shared inside :func:`shared_objects`."""
    electrons = collection(events, "Electron")
    key = ("isolated_electrons", pt, cuts["electron_abseta"], cuts["electron_wp80_fields"], cuts["electron_cut_based_min"])
    return shared(events, key, lambda: isolated_electrons(electrons, cuts, pt=pt, source=source_name(events)))


def shared_good_jets(events: Any, cuts: CutTable) -> ak.Array:
    """:func:`good_jets` of ``events.Jet``, shared inside :func:`shared_objects`."""
    jets = collection(events, "Jet")
    key = ("good_jets", cuts["jet_pt"], cuts["jet_abseta"], cuts["jet_id_mask"])
    return shared(events, key, lambda: good_jets(jets, cuts))


def isolated_muons(muons: ak.Array, cuts: CutTable, *, pt: float) -> ak.Array:
    """Tight, isolated muons above ``pt`` (|eta| and isolation from the table)."""
    return (
        (muons.pt > pt)
        & (np.abs(muons.eta) < cuts["muon_abseta"])
        & muons.tightId
        & (muons.pfRelIso04_all <= cuts["muon_iso"])
    )


def electron_id(electrons: ak.Array, cuts: CutTable, *, source: str) -> ak.Array:
    """MVA-isolation WP80, or tight cut-based ID where the table allows it.

    The WP80 flag is read from the first of ``electron_wp80_fields`` that the file has,
    because its name changed between NanoAOD versions.
    """
    field = next((name for name in cuts["electron_wp80_fields"] if name in electrons.fields), None)
    cut_based_min = cuts["electron_cut_based_min"]
    if field is None and (cut_based_min is None or "cutBased" not in electrons.fields):
        raise MissingInputError(
            f"{source}: no electron ID branch found (looked for Electron_{', Electron_'.join(cuts['electron_wp80_fields'])}"
            + (", Electron_cutBased" if cut_based_min is not None else "")
            + ")"
        )
    passed = electrons[field] if field is not None else ak.zeros_like(electrons.pt, dtype=bool)
    if cut_based_min is not None and "cutBased" in electrons.fields:
        passed = passed | (electrons.cutBased >= cut_based_min)
    return passed


def isolated_electrons(electrons: ak.Array, cuts: CutTable, *, pt: float, source: str) -> ak.Array:
    """Identified electrons above ``pt`` within the table's |eta| range."""
    return (electrons.pt > pt) & (np.abs(electrons.eta) < cuts["electron_abseta"]) & electron_id(
        electrons, cuts, source=source
    )


def good_jets(jets: ak.Array, cuts: CutTable) -> ak.Array:
    """Jets passing pt, |eta| and the jet ID bit of the table (before lepton cleaning)."""
    return (jets.pt > cuts["jet_pt"]) & (np.abs(jets.eta) < cuts["jet_abseta"]) & ((jets.jetId & cuts["jet_id_mask"]) != 0)


def far_from(objects: ak.Array, others: ak.Array, dr: float) -> ak.Array:
    """True for each object farther than ``dr`` from every one of ``others``.

    ``others`` must be a jagged list per event of the objects to clean against, which are
    the selected leptons only. An event without any keeps all its objects.
    """
    return ak.all(objects.metric_table(others) > dr, axis=2)


def soft_muons(muons: ak.Array, cuts: CutTable) -> ak.Array:
    """Non-isolated, displaced tight muons: the soft-muon candidates of a heavy-flavour jet."""
    return (
        (muons.pt < cuts["soft_muon_pt_max"])
        & (np.abs(muons.eta) < cuts["soft_muon_abseta"])
        & muons.tightId
        & (muons.pfRelIso04_all > cuts["soft_muon_iso_min"])
        & (np.abs(muons.dxy) > cuts["soft_muon_dxy_sig_min"] * muons.dxyErr)
    )


def transverse_mass(lepton: ak.Array, met: ak.Array) -> ak.Array:
    """mT = sqrt(2 pT(l) MET (1 - cos(dphi))) of one lepton per event and the MET record."""
    dphi = lepton.phi - met.phi
    return np.sqrt(2.0 * lepton.pt * met.pt * (1.0 - np.cos(dphi)))


def leading(indices: ak.Array, pt: ak.Array) -> ak.Array:
    """Entry of ``indices`` at the maximum of ``pt`` per event (None for empty events)."""
    return ak.firsts(indices[ak.argmax(pt, axis=1, keepdims=True)])
