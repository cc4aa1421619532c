"""End-to-end rate of the calibration processor with no, one and two DeepJet models.

A fourth configuration runs the two models with ``Tagger.fast`` off, through the eager
``DeepJet`` module, to measure what the fast inference path gives inside the processor.

Each configuration runs coffea's Runner with the iterative executor over the calibration
datasets of a generated fileset, in this process with one torch thread, so the rate is
per core. Models are loaded before the clock starts, as ``advcalib run`` does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from advcalib.bench.stages import STAGES, StageClock, instrument_processor
from advcalib.bench.timing import torch_threads

logger = logging.getLogger(__name__)


def load_calibration_fileset(fileset_path: Path) -> dict[str, Any]:
    """Return the coffea fileset of the calibration datasets of a fileset JSON file.

    Files without events are left out with a warning: a small generated sample can give
    a pseudo-data file with no entries, which the Runner cannot open as a tree.
    """
    import uproot

    from advcalib.fileset import coffea_fileset, load_fileset
    from advcalib.run import calibration_datasets

    fileset = {}
    for name, dataset in coffea_fileset(calibration_datasets(load_fileset(fileset_path))).items():
        files = {}
        for path, tree in dataset["files"].items():
            with uproot.open(path) as file:
                n_entries = file[tree].num_entries if tree in file else 0
            if n_entries:
                files[path] = tree
            else:
                logger.warning("%s has no entries in tree %s; left out of the benchmark", path, tree)
        if files:
            fileset[name] = dataset | {"files": files}
    if not fileset:
        raise ValueError(f"{fileset_path}: no calibration file has events; generate a larger sample")
    return fileset


def run_once(
    fileset: dict[str, Any], models: dict[str, str], *, chunksize: int, device: str | None, maxchunks: int | None = None
) -> tuple[float, int, dict[str, float]]:
    """Run the processor once; return wall seconds, events processed and seconds per stage."""
    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema

    from advcalib.processor import CalibrationProcessor, cached_tagger

    for source in models.values():
        cached_tagger(source, device)
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=False), schema=PFNanoAODSchema, chunksize=chunksize, maxchunks=maxchunks
    )
    clock = StageClock()
    with instrument_processor(clock):
        start = time.perf_counter()
        output = runner(fileset, CalibrationProcessor(models=models, device=device))
        seconds = time.perf_counter() - start
    n_events = int(sum(output["n_events"].values()))
    return seconds, n_events, {stage: clock.seconds.get(stage, 0.0) for stage in STAGES}


@contextlib.contextmanager
def eager_taggers(models: dict[str, str], device: str | None) -> Iterator[None]:
    """Turn ``Tagger.fast`` off for the cached taggers inside the block and restore it afterwards."""
    from advcalib.processor import cached_tagger

    taggers = [cached_tagger(source, device) for source in models.values()]
    previous = [tagger.fast for tagger in taggers]
    for tagger in taggers:
        tagger.fast = False
    try:
        yield
    finally:
        for tagger, fast in zip(taggers, previous):
            tagger.fast = fast


def measure_processor(fileset_path: Path, *, models: dict[str, str], chunksize: int, device: str | None) -> dict[str, Any]:
    """Measure events/s per core without models, with the first model, with both, and with both run eagerly."""
    fileset = load_calibration_fileset(fileset_path)
    names = list(models)
    configurations = {
        "no model": {},
        "one model": {names[0]: models[names[0]]},
        "two models": dict(models),
        "two models, eager": dict(models),
    }
    rows = []
    with torch_threads(1):
        run_once(fileset, {}, chunksize=500, device=device, maxchunks=1)  # warm-up: imports, page cache
        for label, chosen in configurations.items():
            mode = eager_taggers(chosen, device) if label.endswith("eager") else contextlib.nullcontext()
            with mode:
                seconds, n_events, stages = run_once(fileset, chosen, chunksize=chunksize, device=device)
            inside = sum(stages.values())
            rows.append({
                "configuration": label,
                "models": list(chosen),
                "events": n_events,
                "seconds": seconds,
                "events_per_s": n_events / seconds,
                "stage_seconds": stages,
                "stage_share": {stage: value / inside for stage, value in stages.items()} if inside > 0 else {},
                "untimed_seconds": seconds - inside,
            })
            logger.info("processor, %s: %d events in %.2f s", label, n_events, seconds)
    return {"rows": rows, "chunksize": chunksize}
