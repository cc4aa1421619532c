"""Mode ``dask-awkward``: the same eager processor applied to each dask-awkward partition.

Events are opened with ``NanoEventsFactory.from_root(mode="dask")``, one dask-awkward
array per file whose partitions are the planned chunks. Each partition becomes a delayed
object, the processor's ``process`` runs on it as one task, and the outputs are added
in a tree with the grouping of coffea's ``DaskExecutor`` (``tree_reduction`` outputs per
task, in chunk order). The histograms are therefore bit-identical to mode ``runner``
with the Dask executor (``compression`` unset), and to the iterative executor when
there are at most ``tree_reduction`` chunks.

A partition handed to a delayed function would read every branch of the tree, because
dask-awkward cannot see which columns the eager processor uses. The processor is
therefore traced first with coffea's ``coffea.nanoevents.trace.trace`` (typetracer,
then zero-length and one-length events) on the first file of each dataset, and only
the branches it touched are read. A branch touched only for some events and missed by
the trace fails loudly in that partition, not silently.

NOTE: the branches of a partition are read in uproot's input task, before the
guarded ``process`` call. A read error there (an unreadable basket in a file that
opened fine) is retried but not recorded in ``failed_files``: the run stops with the
error even with ``skip_bad_files``. Mode ``runner`` reads inside ``process`` and records
it. uproot's ``allow_read_errors_with_report`` option would be the way to record it here.

``events.metadata`` contains what the Runner gives a chunk (``dataset``, ``filename``,
``treename``, ``entrystart``, ``entrystop`` and the dataset's metadata) except
``fileuuid``.
"""

from __future__ import annotations

import logging
from typing import Any

import awkward as ak
import dask
import uproot
from coffea.nanoevents import NanoEventsFactory
from coffea.nanoevents.trace import trace
from coffea.processor import accumulate
from coffea.processor.executor import WorkItem

from advcalib.scaleout.chunks import steps_by_file
from advcalib.scaleout.guard import ChunkGuard

logger = logging.getLogger(__name__)

#: Branches NanoAODSchema requires in every projection.
EVENT_ID_BRANCHES = frozenset({"run", "luminosityBlock", "event"})


def run_dask_awkward(
    guard: ChunkGuard,
    items: list[WorkItem],
    *,
    client: Any,
    schema: type,
    retries: int,
    tree_reduction: int,
) -> dict[str, Any] | None:
    """Run the guarded processor on every partition and return the accumulated guard output.

    Without a client the graph runs on dask's synchronous scheduler in this process.
    """
    if not items:
        return None
    metadata_by_file = {(item.dataset, item.filename, item.treename): item.usermeta or {} for item in items}
    guard_node = dask.delayed(guard, pure=True)
    branches: dict[str, frozenset[str]] = {}
    outputs = []
    for (dataset, filename, treename), steps in steps_by_file(items).items():
        metadata = {**metadata_by_file[(dataset, filename, treename)], "dataset": dataset, "filename": filename, "treename": treename}
        if dataset not in branches:
            branches[dataset] = traced_branches(guard.processor, filename=filename, treename=treename, schema=schema, metadata=metadata)
        uproot_options = {"filter_name": sorted(branches[dataset])} if branches[dataset] else {}
        events = NanoEventsFactory.from_root(
            {filename: {"object_path": treename, "steps": steps}},
            mode="dask",
            schemaclass=schema,
            metadata=metadata,
            uproot_options=uproot_options,
        ).events()
        partitions = events.to_delayed()
        if len(partitions) != len(steps):
            raise RuntimeError(f"{filename}: dask-awkward made {len(partitions)} partitions for {len(steps)} chunks")
        for partition, (start, stop) in zip(partitions, steps):
            outputs.append(dask.delayed(_process_partition)(guard_node, partition, filename, start, stop))
    total = tree_reduce(outputs, tree_reduction=tree_reduction)
    logger.info("running %d partitions of %d files as a dask-awkward graph", len(outputs), len(metadata_by_file))
    if client is None:
        (result,) = dask.compute(total, scheduler="sync")
        return result
    return client.compute(total, retries=retries).result()


def traced_branches(processor: Any, *, filename: str, treename: str, schema: type, metadata: dict[str, Any]) -> frozenset[str]:
    """Branches of the collections the processor reads, traced on zero events of ``filename``.

    Whole collections are kept (every ``Jet_*`` branch and ``nJet`` once any ``Jet_``
    branch is touched) because nanoevents behaviours need fields the processor does
    not touch itself, such as the four-vector components. ``run``,
    ``luminosityBlock`` and ``event`` are always kept because NanoAODSchema requires them. Returns an empty set if the
    trace found nothing, meaning every branch must be read.
    """
    with uproot.open({filename: None}) as root_file:
        all_branches = list(root_file[treename].keys())
        events = NanoEventsFactory.from_root(
            root_file, treepath=treename, mode="virtual", entry_start=0, entry_stop=0, schemaclass=schema, metadata=metadata
        ).events()
        touched = trace(processor.process, events)
    if not touched:
        logger.warning("tracing the processor on %s touched no branch; every branch will be read", filename)
        return frozenset()
    collections = {name.split("_", 1)[0] for name in touched if "_" in name}
    collections |= {name[1:] for name in touched if name.startswith("n") and name[1:] in collections}
    selected = set(touched) | (EVENT_ID_BRANCHES & set(all_branches))
    for name in all_branches:
        prefix = name.split("_", 1)[0]
        if ("_" in name and prefix in collections) or (name.startswith("n") and name[1:] in collections):
            selected.add(name)
    logger.info("processor reads %d of %d branches of %s", len(selected), len(all_branches), filename)
    return frozenset(selected)


def _process_partition(guard: ChunkGuard, events: Any, filename: str, start: int, stop: int) -> dict[str, Any]:
    # The metadata of a dask-awkward array is per file; add the partition's entry range.
    metadata = {**events.metadata, "entrystart": start, "entrystop": stop}
    events = ak.with_parameter(events, "metadata", metadata, behavior=events.behavior, attrs=events.attrs)
    return guard.process_chunk(events, filename=filename, entrystart=start, entrystop=stop)


def _accumulate(outputs: list[Any]) -> Any:
    return accumulate(outputs)


def tree_reduce(outputs: list[Any], *, tree_reduction: int) -> Any:
    """Add delayed outputs in groups of ``tree_reduction``, level by level, keeping their order."""
    level = list(outputs)
    while len(level) > 1:
        level = [
            dask.delayed(_accumulate)(level[start : start + tree_reduction]) for start in range(0, len(level), tree_reduction)
        ]
    return level[0]
