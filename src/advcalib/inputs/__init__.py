"""DeepJet and DeepCSV inputs from PFNano events (CMSSW definitions, column-wise)."""

from __future__ import annotations

from advcalib.inputs.branches import deepjet_branches
from advcalib.inputs.builder import build_deepjet_inputs, choose_source, required_branches
from advcalib.inputs.container import DeepJetInputs
from advcalib.inputs.deepcsv import build_deepcsv_inputs

__all__ = [
    "DeepJetInputs",
    "build_deepcsv_inputs",
    "build_deepjet_inputs",
    "choose_source",
    "deepjet_branches",
    "required_branches",
]
