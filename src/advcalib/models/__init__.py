"""Flavour-tagging networks (DeepJet, DeepCSV), their discriminators, files and inference."""

from __future__ import annotations

from advcalib.models.checkpoint import load_checkpoint, save_checkpoint
from advcalib.models.deepcsv import DeepCSV
from advcalib.models.deepjet import DeepJet
from advcalib.models.device import resolve_device
from advcalib.models.discriminators import DISCRIMINATOR_NAMES, discriminators
from advcalib.models.loading import PACKAGED_MODELS, load_tagger
from advcalib.models.onnx_import import import_onnx_deepjet
from advcalib.models.tagger import Tagger

__all__ = [
    "DISCRIMINATOR_NAMES",
    "PACKAGED_MODELS",
    "DeepCSV",
    "DeepJet",
    "Tagger",
    "discriminators",
    "import_onnx_deepjet",
    "load_checkpoint",
    "load_tagger",
    "resolve_device",
    "save_checkpoint",
]
