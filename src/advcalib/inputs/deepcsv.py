"""DeepCSV inputs (66 per jet) from NanoAOD's ``Jet_DeepCSV_*`` branches."""

from __future__ import annotations

import logging

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs.jets import flat_field, raw_jets, select_jets

logger = logging.getLogger(__name__)

_FROM_JET = ("jet_pt", "jet_eta")


def deepcsv_branches() -> list[str]:
    """ROOT branches that ``build_deepcsv_inputs`` reads."""
    stored = [f"Jet_DeepCSV_{name}" for name in spec.DEEPCSV.names if name not in _FROM_JET]
    return ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_rawFactor", *stored]


def build_deepcsv_inputs(events: ak.Array, jet_index: ak.Array | None = None) -> np.ndarray:
    """DeepCSV inputs [N, 66] float32 in ``spec.DEEPCSV`` order, rows as in ``build_deepjet_inputs``.

    Jet pt is the uncorrected pt, as for DeepJet. Every other input is the stored
    ``Jet_DeepCSV_<name>`` value, and NanoAOD's -999 for a missing tagging variable is kept.
    NaN and infinite values become 0.
    """
    missing = [b for b in deepcsv_branches() if b.partition("_")[2] not in events.Jet.fields]
    if missing:
        raise KeyError(f"cannot build DeepCSV inputs: missing branches {', '.join(missing[:5])}; use a NanoAOD file with DeepCSV inputs")
    selection = select_jets(events, jet_index)
    jets = raw_jets(events, selection)
    columns = {"jet_pt": jets.pt, "jet_eta": jets.eta}
    for name in spec.DEEPCSV.names:
        if name not in columns:
            columns[name] = flat_field(events.Jet, f"DeepCSV_{name}")[selection.global_index]
    out = np.stack([columns[name] for name in spec.DEEPCSV.names], axis=1) if len(selection) else np.zeros((0, 66))
    bad = ~np.isfinite(out)
    if bad.any():
        logger.warning("replaced %d NaN or infinite DeepCSV input values by 0", int(bad.sum()))
    return np.where(bad, 0.0, out).astype(np.float32)
