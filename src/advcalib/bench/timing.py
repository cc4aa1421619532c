"""Timing helpers shared by the benchmarks: best-of-N wall time, thread counts, machine load."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on the CPU), so wall times cover the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(function: Callable[[], Any], *, repeats: int, device: torch.device | None = None, warmup: int = 1) -> float:
    """Return the shortest wall time in seconds of ``repeats`` calls after ``warmup`` calls.

    The minimum is the estimate least disturbed by other processes on a shared machine;
    it is still an upper bound of the undisturbed time.
    """
    device = device or torch.device("cpu")
    for _ in range(warmup):
        function()
    synchronize(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        function()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


@contextlib.contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``n_threads`` torch intra-op threads and restore the old count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def all_threads() -> int:
    """Return the CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # sched_getaffinity exists on Linux only
        return os.cpu_count() or 1


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe the machine, the software versions and the current load average."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": all_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average_start": list(os.getloadavg()),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
