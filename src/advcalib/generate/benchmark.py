"""Throughput measurement of the generator (not run by the tests)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from advcalib.generate.core import generate
from advcalib.generate.presets import load_preset


def benchmark_generate(preset: str = "demo", *, events: int | None = None, seed: int = 1, out_dir: str | Path | None = None) -> dict[str, float]:
    """Generate ``preset`` once and return CPU time, wall time and event rates.

    ``generated_per_cpu_s`` counts every generated event, including those a soft-muon
    filter drops after the cheap hard-process stage; ``written_per_cpu_s`` counts events
    written with their full jet contents. CPU time is the process time of this process
    (one core), so other load on the machine affects only the wall time.
    """
    config = load_preset(preset)
    if events is not None:
        config = config.scaled(events)
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(out_dir) if out_dir is not None else Path(scratch)
        cpu, wall = time.process_time(), time.perf_counter()
        fileset_path = generate(config, target, seed=seed)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        fileset = json.loads(fileset_path.read_text())
    generated = sum(d["metadata"]["generated_events"] for d in fileset.values())
    written = sum(d["metadata"]["events"] for d in fileset.values())
    return {"cpu_s": cpu, "wall_s": wall, "generated_events": generated, "written_events": written,
            "generated_per_cpu_s": generated / cpu, "written_per_cpu_s": written / cpu}
