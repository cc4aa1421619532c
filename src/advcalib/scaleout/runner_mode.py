"""Mode ``runner``: coffea's ``processor.Runner`` with one task per chunk."""

from __future__ import annotations

import logging
from typing import Any

from coffea import processor
from coffea.processor.executor import WorkItem

from advcalib.scaleout.guard import ChunkGuard

logger = logging.getLogger(__name__)


def run_runner(
    guard: ChunkGuard,
    items: list[WorkItem],
    *,
    executor: processor.executor.ExecutorBase,
    schema: type,
    chunksize: int,
) -> dict[str, Any] | None:
    """Run the guarded processor over the planned chunks; returns the accumulated guard output.

    The Runner gets the chunk list itself, so it does no file inspection of its own, and
    ``skipbadfiles`` stays off because the guard records failures.
    """
    if not items:
        return None
    runner = processor.Runner(executor=executor, schema=schema, chunksize=chunksize, skipbadfiles=False)
    logger.info("running %d chunks with %s", len(items), type(executor).__name__)
    wrapped = runner.run(items, guard)
    return wrapped["out"]
