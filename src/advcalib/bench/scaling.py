"""Scale-out: events/s of a Dask LocalCluster with one and two workers, and memory per worker.

The processor runs through ``advcalib.scaleout.run_processor`` on a LocalCluster opened
with ``open_executor``, as ``advcalib run`` does with executor ``dask``. Each worker gets
one thread and one torch thread. Memory is the resident set size (psutil) of each worker
process, sampled by the client every 0.2 s (``MemorySampler.interval``). Its maximum
over the run is the peak. A short allocation between two samples can be missed, so the
peak is a lower bound.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _worker_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _set_torch_threads() -> int:
    import torch

    torch.set_num_threads(1)
    return torch.get_num_threads()


class MemorySampler:
    """Background poller of the RSS of every worker of a client."""

    def __init__(self, client: Any, *, interval: float = 0.2) -> None:
        self.client = client
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for worker, rss in self.client.run(_worker_rss).items():
                    self.peaks[worker] = max(self.peaks.get(worker, 0), rss)
            except Exception as error:  # a worker may be restarting; the next poll retries
                logger.debug("memory poll failed: %s", error)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


#: Dataset whose file is replicated: ttbar events have the most jets and pass the bottom selection.
SCALING_DATASET = "ttbar_semilep"


def replicate_files(fileset: dict[str, Any], n_files: int, folder: Path) -> dict[str, Any]:
    """Return a one-dataset fileset of ``n_files`` links to one file of ``fileset``.

    The file is the first of :data:`SCALING_DATASET`, or of the largest dataset when that
    one is missing.
    """
    if SCALING_DATASET in fileset:
        name, dataset = SCALING_DATASET, fileset[SCALING_DATASET]
    else:
        name, dataset = max(fileset.items(), key=lambda item: sum(Path(f).stat().st_size for f in item[1]["files"]))
    source = Path(next(iter(dataset["files"])))
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for index in range(n_files):
        link = folder / f"{source.stem}_{index}.root"
        if not link.exists():
            try:
                os.link(source, link)
            except OSError:  # another file system: copy instead
                shutil.copyfile(source, link)
        files[str(link)] = "Events"
    return {name: {"files": files, "metadata": dataset["metadata"]}}


def run_cluster(
    fileset: dict[str, Any], models: dict[str, str], *, workers: int, chunksize: int, tree_reduction: int
) -> dict[str, Any]:
    """Process ``fileset`` on a fresh LocalCluster of ``workers`` workers; return rate and peak RSS."""
    from advcalib.processor import CalibrationProcessor
    from advcalib.scaleout import ExecutorOptions, open_executor, run_processor

    options = ExecutorOptions(
        executor="dask", chunksize=chunksize, retries=0, tree_reduction=tree_reduction,
        dask={"workers": workers, "memory_limit": "4GB"},
    )
    with open_executor(options, models=list(models.values())) as (executor, client):
        client.wait_for_workers(workers)
        client.run(_set_torch_threads)
        baseline = client.run(_worker_rss)
        with MemorySampler(client) as sampler:
            start = time.perf_counter()
            output = run_processor(CalibrationProcessor(models=models), fileset, options, session=(executor, client))
            seconds = time.perf_counter() - start
    n_events = int(sum(output["n_events"].values()))
    return {
        "workers": workers,
        "events": n_events,
        "seconds": seconds,
        "events_per_s": n_events / seconds,
        "baseline_rss_mb": {w: v / 2**20 for w, v in baseline.items()},
        "peak_rss_mb": {w: v / 2**20 for w, v in sampler.peaks.items()},
    }


def measure_scaling(
    fileset: dict[str, Any], models: dict[str, str], *, file_counts: tuple[int, ...], chunksize: int, tree_reduction: int, folder: Path
) -> dict[str, Any]:
    """Rate with one and two workers on the largest file count; peak memory of one worker per file count."""
    largest = replicate_files(fileset, max(file_counts), folder / f"files_{max(file_counts)}")
    speed = [run_cluster(largest, models, workers=n, chunksize=chunksize, tree_reduction=tree_reduction) for n in (1, 2)]
    memory = []
    for n_files in file_counts:
        run = speed[0] if n_files == max(file_counts) else run_cluster(
            replicate_files(fileset, n_files, folder / f"files_{n_files}"), models, workers=1, chunksize=chunksize,
            tree_reduction=tree_reduction,
        )
        memory.append({"files": n_files, "peak_rss_mb": max(run["peak_rss_mb"].values(), default=None)})
        logger.info("scaling: %d files, peak worker RSS %s MB", n_files, memory[-1]["peak_rss_mb"])
    return {
        "speed": speed,
        "speedup_2_workers": speed[1]["events_per_s"] / speed[0]["events_per_s"],
        "memory": memory,
        "tree_reduction": tree_reduction,
    }
