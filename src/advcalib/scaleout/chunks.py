"""Input inspection and chunking shared by both execution modes.

Both modes process exactly the same chunks: :func:`plan_chunks` splits each readable
file the way coffea's Runner does (``FileMeta.chunks``), and the Runner receives the
resulting ``WorkItem`` list while the dask-awkward mode turns it into per-file steps.
Histograms of the two modes are therefore filled from the same events in the same
order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uproot
from coffea.processor.executor import FileMeta, WorkItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileTask:
    """One input file of a dataset, with the dataset's metadata."""

    dataset: str
    filename: str
    treename: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileInfo:
    """Result of opening one file: its entry count and UUID, or the error that stopped it."""

    task: FileTask
    num_entries: int | None = None
    uuid: bytes | None = None
    error: str | None = None


def read_fileset(fileset: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Return the fileset mapping, reading it from a JSON file when given a path."""
    if isinstance(fileset, (str, Path)):
        path = Path(fileset)
        if not path.is_file():
            raise FileNotFoundError(f"fileset {path} not found")
        return json.loads(path.read_text())
    return dict(fileset)


def file_tasks(fileset: Mapping[str, Any], *, treename: str) -> list[FileTask]:
    """Flatten a coffea fileset into one :class:`FileTask` per file, in fileset order.

    Accepts ``{dataset: [file, ...]}``, ``{dataset: {"files": [...] or {file: tree}, "metadata": {...},
    "treename": ...}}``, and dask-awkward style ``{file: {"object_path": tree, ...}}`` entries.
    """
    tasks: list[FileTask] = []
    for dataset, spec in fileset.items():
        metadata: Mapping[str, Any] = {}
        dataset_tree = treename
        files: Any = spec
        if isinstance(spec, Mapping):
            if "files" not in spec:
                raise ValueError(f"dataset {dataset!r} of the fileset has no 'files' entry")
            metadata = spec.get("metadata") or {}
            dataset_tree = spec.get("treename", treename)
            files = spec["files"]
        if isinstance(files, Mapping):
            for name, tree in files.items():
                if isinstance(tree, Mapping):
                    tree = tree.get("object_path", dataset_tree)
                tasks.append(FileTask(dataset, str(name), tree or dataset_tree, metadata))
        elif isinstance(files, (list, tuple)):
            tasks.extend(FileTask(dataset, str(name), dataset_tree, metadata) for name in files)
        else:
            raise ValueError(f"files of dataset {dataset!r} must be a list or a mapping, found {type(files).__name__}")
    if not tasks:
        raise ValueError("the fileset lists no files")
    return tasks


def inspect_file(task: FileTask, *, retries: int = 0, timeout: float | None = 60) -> FileInfo:
    """Open one file and read its tree's entry count and UUID, trying ``retries`` extra times.

    An unreadable file raises nothing here. Its error comes back in ``FileInfo.error``, so
    the caller decides between raising and skipping.
    """
    error = ""
    for attempt in range(retries + 1):
        try:
            with uproot.open({task.filename: None}, timeout=timeout) as root_file:
                tree = root_file[task.treename]
                return FileInfo(task, num_entries=int(tree.num_entries), uuid=bytes(root_file.file.fUUID))
        except Exception as caught:  # noqa: BLE001 - any failure to open is reported per file
            error = f"{type(caught).__name__}: {caught}"
            logger.warning("attempt %d of %d to open %s failed: %s", attempt + 1, retries + 1, task.filename, error)
            if attempt < retries:
                time.sleep(min(2.0**attempt, 10.0))
    return FileInfo(task, error=f"cannot open file or tree {task.treename!r}: {error}")


def inspect_files(
    tasks: Iterable[FileTask],
    *,
    retries: int,
    map_function: Callable[..., list[FileInfo]] | None = None,
) -> list[FileInfo]:
    """Inspect every file, in this process or through ``map_function(func, tasks)`` (e.g. a Dask client)."""
    tasks = list(tasks)
    if map_function is None:
        return [inspect_file(task, retries=retries) for task in tasks]
    return map_function(_InspectWithRetries(retries), tasks)


@dataclass(frozen=True)
class _InspectWithRetries:
    retries: int

    def __call__(self, task: FileTask) -> FileInfo:
        return inspect_file(task, retries=self.retries)


def plan_chunks(infos: Iterable[FileInfo], *, chunksize: int, maxchunks: int | None = None) -> list[WorkItem]:
    """Split readable files into coffea ``WorkItem`` chunks of about ``chunksize`` entries.

    The split is coffea's own (``FileMeta.chunks``): a file of n entries becomes
    k = max(round(n / chunksize), 1) contiguous chunks of ceil(n / k) entries, the last
    one shorter, so a chunk can exceed ``chunksize`` by up to half of it. A file without
    entries gives no chunk. ``maxchunks`` limits the chunks per dataset.
    """
    items: list[WorkItem] = []
    per_dataset: dict[str, int] = {}
    for info in infos:
        if info.error is not None or not info.num_entries:
            continue
        meta = FileMeta(info.task.dataset, info.task.filename, info.task.treename, dict(info.task.metadata))
        meta.metadata.update({"numentries": info.num_entries, "uuid": info.uuid})
        for item in meta.chunks(chunksize, False):
            if maxchunks is not None and per_dataset.get(item.dataset, 0) >= maxchunks:
                break
            per_dataset[item.dataset] = per_dataset.get(item.dataset, 0) + 1
            items.append(item)
    return items


def steps_by_file(items: Iterable[WorkItem]) -> dict[tuple[str, str, str], list[list[int]]]:
    """Group chunks by (dataset, file, tree) as dask-awkward ``steps`` lists, keeping their order."""
    steps: dict[tuple[str, str, str], list[list[int]]] = {}
    for item in items:
        steps.setdefault((item.dataset, item.filename, item.treename), []).append([item.entrystart, item.entrystop])
    return steps
