"""advcalib: calibration of nominal and adversarially trained DeepJet taggers with coffea."""

from __future__ import annotations

__version__ = "0.1.0"
