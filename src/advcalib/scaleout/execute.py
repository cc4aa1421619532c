"""``run_processor``: one entry point for every executor and both execution modes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import coffea.nanoevents
from coffea.processor import ProcessorABC

from advcalib.scaleout import chunks
from advcalib.scaleout.config import ExecutorOptions
from advcalib.scaleout.dask_awkward_mode import run_dask_awkward
from advcalib.scaleout.executors import open_executor
from advcalib.scaleout.guard import ChunkGuard, unwrap_output
from advcalib.scaleout.runner_mode import run_runner

logger = logging.getLogger(__name__)


def resolve_schema(name: str) -> type:
    """Return the coffea.nanoevents schema class of this name, e.g. ``PFNanoAODSchema``."""
    schema = getattr(coffea.nanoevents, name, None)
    if not isinstance(schema, type) or not issubclass(schema, coffea.nanoevents.BaseSchema):
        raise ValueError(f"schema {name!r} is not a coffea.nanoevents schema; use e.g. NanoAODSchema or PFNanoAODSchema")
    return schema


def run_processor(
    processor: ProcessorABC,
    fileset: Mapping[str, Any] | str | Path,
    options: ExecutorOptions,
    *,
    models: Iterable[str | Path] = (),
    schema: type | None = None,
    session: tuple[Any, Any] | None = None,
) -> Any:
    """Run ``processor`` over ``fileset`` and return its accumulated, postprocessed output.

    Method: every file is opened once to read its entry count. An unreadable file
    raises, or with ``skip_bad_files`` goes to ``failed_files``. The files are cut into
    chunks as coffea's Runner cuts them, and the chunks run in ``options.mode``
    ('runner': coffea Runner, one task per chunk; 'dask-awkward': one task per
    dask-awkward partition). Processed entries are then checked against the files'
    entries per file.

    Edge cases: a file with no entries gives no chunk; if no chunk produces an output a
    ``RuntimeError`` lists the failures. The output gets a ``failed_files`` key (file ->
    reasons), empty when nothing failed.

    Args:
        processor: the coffea processor, unchanged between modes.
        fileset: coffea fileset mapping or the path of its JSON file.
        options: executor, mode, chunking and cluster settings.
        models: model sources the processor loads, shipped to Dask workers.
        schema: nanoevents schema class; default ``options.schema_name``.
        session: ``(executor, client)`` from an already open :func:`open_executor`.
    """
    schema = schema or resolve_schema(options.schema_name)
    tasks = chunks.file_tasks(chunks.read_fileset(fileset), treename=options.treename)
    if session is not None:
        return _run_in_session(processor, tasks, options, schema=schema, session=session)
    with open_executor(options, models=models) as opened:
        return _run_in_session(processor, tasks, options, schema=schema, session=opened)


def _run_in_session(
    processor: ProcessorABC,
    tasks: list[chunks.FileTask],
    options: ExecutorOptions,
    *,
    schema: type,
    session: tuple[Any, Any],
) -> Any:
    executor, client = session
    map_function = None if client is None else _client_map(client, retries=options.retries)
    infos = chunks.inspect_files(tasks, retries=0 if client is not None else options.retries, map_function=map_function)
    bad = [info for info in infos if info.error is not None]
    if bad and not options.skip_bad_files:
        listing = "\n".join(f"  {info.task.filename}: {info.error}" for info in bad)
        raise RuntimeError(f"{len(bad)} input files cannot be read:\n{listing}\nfix or remove them, or pass --skip-bad-files")

    items = chunks.plan_chunks(infos, chunksize=options.chunksize, maxchunks=options.maxchunks)
    expected: dict[str, int] = {}
    for item in items:
        expected[item.filename] = expected.get(item.filename, 0) + len(item)
    file_datasets = {task.filename: task.dataset for task in tasks}

    guard = ChunkGuard(
        processor,
        skip_bad_files=options.skip_bad_files,
        retries=options.retries,
        retry_in_task=(options.mode == "dask-awkward" and client is None),
    )
    if options.mode == "runner":
        wrapped = run_runner(guard, items, executor=executor, schema=schema, chunksize=options.chunksize)
    else:
        wrapped = run_dask_awkward(
            guard, items, client=client, schema=schema, retries=options.retries, tree_reduction=options.tree_reduction
        )
    return unwrap_output(wrapped, processor=processor, infos=infos, expected_entries=expected, file_datasets=file_datasets)


def _client_map(client: Any, *, retries: int):
    def map_function(function: Any, tasks: list[Any]) -> list[Any]:
        futures = client.map(function, tasks, retries=retries, pure=False)
        return client.gather(futures)

    return map_function
