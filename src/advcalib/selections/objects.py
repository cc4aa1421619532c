"""Object definitions shared by the selections: triggers, leptons, jets, soft muons.

Each function is a pure columnar function of NanoEvents collections (or hand-built
awkward arrays with the coffea candidate behaviour) and returns a mask of the same
jagged shape as its input collection. Thresholds come in from the cut tables.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import awkward as ak
import numpy as np

from advcalib.selections.cuts import CutTable

logger = logging.getLogger(__name__)


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
