"""Synthetic PFNano generator: simulation and pseudo-data with known mismodeling.

``generate(preset, out_dir)`` writes PFNano-layout ROOT files for Drell-Yan, W+jets, W+c,
ttbar and QCD multijet events, the pseudo-data of the calibration processes with the
preset's mismodeling knobs applied, a truth sidecar per pseudo-data file,
``mismodeling.json`` and ``fileset.json``. See ``docs/generator.md``.
"""

from __future__ import annotations

from advcalib.generate.core import generate
from advcalib.generate.mismodeling import Knobs, Mismodeling
from advcalib.generate.presets import DatasetSpec, Preset, load_preset

__all__ = ["DatasetSpec", "Knobs", "Mismodeling", "Preset", "generate", "load_preset"]
