"""Jet-level (global) DeepJet inputs: jet kinematics, counts and DeepCSV tagging variables."""

from __future__ import annotations

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs.jets import JetSelection, RawJets, flat_field

#: Global features read from ``Jet_DeepCSV_<name>`` (the spec name without ``TagVarCSV_``).
TAGVAR_PREFIX = "TagVarCSV_"


def tagvar_branch(feature: str) -> str:
    """NanoAOD branch of a ``TagVarCSV_*`` global feature, e.g. ``Jet_DeepCSV_vertexCategory``."""
    return "Jet_DeepCSV_" + feature[len(TAGVAR_PREFIX):]


def tagvar_features() -> tuple[str, ...]:
    """Names of the global features that come from the DeepCSV tagging variables."""
    return tuple(name for name in spec.GLOBAL.names if name.startswith(TAGVAR_PREFIX))


def read_tagvars(events: ak.Array, selection: JetSelection) -> dict[str, np.ndarray]:
    """Read the ``TagVarCSV_*`` global features of the selected jets as stored.

    A missing tagging variable stays -999, the value that both NanoAOD and CMSSW's
    ``ShallowTagInfoConverter`` use and that the network was fed in CMSSW. On the PFNano
    test file, replacing -999 by 0 moves BvsAll of the jets without tracks by up to 0.02.
    """
    return {
        feature: flat_field(events.Jet, tagvar_branch(feature)[len("Jet_"):])[selection.global_index]
        for feature in tagvar_features()
    }


def build_global_features(
    events: ak.Array,
    selection: JetSelection,
    jets: RawJets,
    *,
    counts: dict[str, np.ndarray],
) -> np.ndarray:
    """Global inputs [N, 15] in ``make_inputs`` order.

    ``counts`` contains ``nCpfcand``, ``nNpfcand`` and ``nsv`` per jet; ``npv`` is ``PV_npvs``,
    the size of ``offlineSlimmedPrimaryVertices`` that CMSSW uses.
    """
    npv = ak.to_numpy(events.PV.npvs).astype(np.float64)[selection.event_index]
    columns = {"jet_pt": jets.pt, "jet_eta": jets.eta, "npv": npv, **counts, **read_tagvars(events, selection)}
    return np.stack([np.asarray(columns[name], dtype=np.float64) for name in spec.GLOBAL.names], axis=1)
