"""Scale-out of advcalib runs: local Dask, HTCondor (Dask or plain batch) and Dask Gateway.

Main entry points::

    options = load_options("scaleout.yaml", site="lxplus", overrides={"executor": "dask"})
    output = run_processor(processor, "fileset.json", options, models=["nominal", "adversarial"])
"""

from __future__ import annotations

from advcalib.scaleout.config import ExecutorOptions, load_options
from advcalib.scaleout.execute import run_processor
from advcalib.scaleout.executors import open_executor
from advcalib.scaleout.guard import FAILED_FILES_KEY, EventCountMismatch
from advcalib.scaleout.plugins import cached_model, resolve_model

__all__ = [
    "FAILED_FILES_KEY",
    "EventCountMismatch",
    "ExecutorOptions",
    "cached_model",
    "load_options",
    "open_executor",
    "resolve_model",
    "run_processor",
]
