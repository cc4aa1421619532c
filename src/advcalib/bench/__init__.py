"""Performance benchmarks of advcalib: inference, input building, processor, training, scale-out.

    from advcalib.bench import BenchConfig, run_benchmarks
    report = run_benchmarks(BenchConfig.quick(Path("bench-out")))

``advcalib bench`` and ``python -m benchmarks`` run the same code; see docs/performance.md.
"""

from __future__ import annotations

from advcalib.bench.config import SECTIONS, BenchConfig
from advcalib.bench.runner import run_benchmarks, write_report

__all__ = ["SECTIONS", "BenchConfig", "run_benchmarks", "write_report"]
