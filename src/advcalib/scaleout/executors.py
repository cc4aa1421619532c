"""Open a coffea executor and, for the Dask executors, its client and cluster.

:func:`open_executor` is a context manager: it starts or joins the cluster, ships the
advcalib package and model files to the workers (see :mod:`advcalib.scaleout.plugins`),
yields ``(executor, client)`` and closes what it started when the block ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from coffea import processor

from advcalib.scaleout import clusters, plugins
from advcalib.scaleout.config import ExecutorOptions

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def open_executor(
    options: ExecutorOptions,
    *,
    models: Iterable[str | Path] = (),
    gateway_class: type | None = None,
) -> Iterator[tuple[processor.executor.ExecutorBase, Any]]:
    """Yield ``(coffea executor, distributed.Client or None)`` for the options' executor.

    ``models`` are model sources (files or packaged names) that the processor loads. The
    Dask executors ship them to every worker, including workers that join later.
    ``gateway_class`` replaces ``dask_gateway.Gateway`` (for tests). Clusters started
    here are closed on exit; a scheduler joined by address is left running.
    """
    if options.executor == "iterative":
        yield processor.IterativeExecutor(retries=options.retries, status=options.status), None
        return
    if options.executor == "futures":
        yield processor.FuturesExecutor(workers=options.workers, retries=options.retries, status=options.status), None
        return

    with contextlib.ExitStack() as stack:
        client, in_process = _start_client(options, stack, gateway_class=gateway_class)
        prepare_workers(client, options, models=models, in_process=in_process, stack=stack)
        executor = processor.DaskExecutor(
            client=client,
            retries=options.retries,
            treereduction=options.tree_reduction,
            compression=options.compression,
            status=options.status,
        )
        yield executor, client


def _start_client(
    options: ExecutorOptions, stack: contextlib.ExitStack, *, gateway_class: type | None
) -> tuple[Any, bool]:
    """Start or join the cluster; returns the client and whether workers share this process."""
    from distributed import Client, LocalCluster

    if options.executor == "dask":
        dask_options = options.dask
        if dask_options.scheduler_address is not None:
            logger.info("joining Dask scheduler %s", dask_options.scheduler_address)
            return stack.enter_context(Client(dask_options.scheduler_address)), False
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=dask_options.workers,
                threads_per_worker=dask_options.threads_per_worker,
                memory_limit=dask_options.memory_limit,
                processes=dask_options.processes,
                dashboard_address=dask_options.dashboard_address,
            )
        )
        logger.info("started LocalCluster with %d workers x %d threads", dask_options.workers, dask_options.threads_per_worker)
        return stack.enter_context(Client(cluster)), not dask_options.processes
    if options.executor == "htcondor":
        cluster = stack.enter_context(clusters.make_htcondor_cluster(options.htcondor))
        clusters.apply_scaling(cluster, options.htcondor)
        logger.info("HTCondor job script:\n%s", cluster.job_script())
        return stack.enter_context(Client(cluster)), False
    if options.executor == "gateway":
        gateway, cluster = clusters.make_gateway_cluster(options.gateway, gateway_class=gateway_class)
        stack.callback(gateway.close)
        stack.callback(cluster.close)
        clusters.apply_scaling(cluster, options.gateway)
        return stack.enter_context(cluster.get_client()), False
    raise ValueError(f"executor {options.executor!r} has no Dask client; use dask, htcondor or gateway")


def prepare_workers(
    client: Any,
    options: ExecutorOptions,
    *,
    models: Iterable[str | Path] = (),
    in_process: bool = False,
    stack: contextlib.ExitStack | None = None,
) -> None:
    """Register the package and model plugins on the client's current and future workers.

    The package upload comes first because the model plugin's class lives in advcalib.
    Workers that run inside this process already share its modules, so ``ship_package``
    'auto' skips the upload for them.
    """
    if options.ship_package == "auto" and not in_process:
        in_process = _workers_in_this_process(client)
    ship = options.ship_package == "always" or (options.ship_package == "auto" and not in_process)
    if ship:
        workdir = Path(tempfile.mkdtemp(prefix="advcalib-ship-"))
        if stack is not None:
            stack.callback(_remove_tree, workdir)
        archive = plugins.package_archive(workdir)
        client.register_plugin(plugins.package_plugin(archive), name=plugins.PACKAGE_PLUGIN_NAME)
    models = list(models)
    if models:
        client.register_plugin(plugins.ModelFilesPlugin.from_sources(models), name=plugins.MODEL_PLUGIN_NAME)
    logger.info("workers prepared: package %s, %d model files", "shipped" if ship else "not shipped", len(models))


def _workers_in_this_process(client: Any) -> bool:
    """True when every current worker runs inside this process (a cluster of threads).

    Such workers share this process's modules, and uploading the package would reload
    advcalib here. A cluster without workers yet counts as remote.
    """
    pids = client.run(os.getpid)
    return bool(pids) and set(pids.values()) == {os.getpid()}


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
