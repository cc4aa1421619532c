"""Construction of HTCondor and Dask Gateway clusters from validated options.

The functions here build cluster objects and scale them; they are separate from
:mod:`advcalib.scaleout.executors` so that the job script or the Gateway cluster options
can be inspected without submitting anything.
"""

from __future__ import annotations

import logging
from typing import Any

from advcalib.scaleout.config import GatewayOptions, HTCondorOptions, ScaleOptions

logger = logging.getLogger(__name__)


def htcondor_cluster_kwargs(options: HTCondorOptions) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.HTCondorCluster`` for these options.

    A grid proxy goes in as ``x509userproxy``: HTCondor then transfers the proxy with
    the job and sets ``X509_USER_PROXY`` in its environment.
    """
    directives = dict(options.job_extra_directives)
    prologue = list(options.job_script_prologue)
    if options.x509_proxy is not None:
        proxy = options.x509_proxy.expanduser().resolve()
        if not proxy.is_file():
            raise FileNotFoundError(f"x509 proxy {proxy} not found; run voms-proxy-init --voms cms --out {proxy}")
        directives.setdefault("x509userproxy", str(proxy))
        directives.setdefault("use_x509userproxy", "true")
    kwargs: dict[str, Any] = {
        "cores": options.cores,
        "memory": options.memory,
        "disk": options.disk,
        "processes": options.processes,
        "job_extra_directives": directives,
        "job_script_prologue": prologue,
        "worker_extra_args": list(options.worker_extra_args),
        "death_timeout": options.death_timeout,
    }
    if options.log_directory is not None:
        options.log_directory.mkdir(parents=True, exist_ok=True)
        kwargs["log_directory"] = str(options.log_directory)
    if options.python is not None:
        kwargs["python"] = options.python
    if options.scheduler_options:
        kwargs["scheduler_options"] = dict(options.scheduler_options)
    return kwargs


def make_htcondor_cluster(options: HTCondorOptions) -> Any:
    """Create an ``HTCondorCluster`` (starts its scheduler here, submits no job yet)."""
    from dask_jobqueue import HTCondorCluster

    return HTCondorCluster(**htcondor_cluster_kwargs(options))


def apply_scaling(cluster: Any, options: ScaleOptions, *, default_jobs: int = 1) -> None:
    """Scale a cluster to a fixed size or make it adaptive; a fixed ``default_jobs`` when neither is set."""
    if options.adapt_minimum is not None or options.adapt_maximum is not None:
        bounds: dict[str, int] = {"minimum": options.adapt_minimum or 0}
        if options.adapt_maximum is not None:
            bounds["maximum"] = options.adapt_maximum
        cluster.adapt(**bounds)
    else:
        cluster.scale(options.scale if options.scale is not None else default_jobs)
    logger.info("cluster %s: %s", type(cluster).__name__, options.describe_scaling())


def make_gateway(options: GatewayOptions, *, gateway_class: type | None = None) -> Any:
    """Create the ``dask_gateway.Gateway`` client for these options (no cluster yet)."""
    if gateway_class is None:
        from dask_gateway import Gateway as gateway_class
    kwargs: dict[str, Any] = {}
    if options.address is not None:
        kwargs["address"] = options.address
    if options.proxy_address is not None:
        kwargs["proxy_address"] = options.proxy_address
    if options.auth is not None:
        kwargs["auth"] = options.auth
    return gateway_class(**kwargs)


def gateway_cluster_options(gateway: Any, options: GatewayOptions) -> Any:
    """Fetch the server's cluster options and set the requested ones.

    ``worker_cores``, ``worker_memory``, ``image`` and ``environment`` use the option
    names of the dask-gateway Helm chart and coffea-casa; ``cluster_options`` sets any
    other option by name. A name the server does not offer raises ``ValueError`` with
    the names it does offer.
    """
    cluster_options = gateway.cluster_options()
    requested: dict[str, Any] = {}
    for name in ("worker_cores", "worker_memory", "image"):
        value = getattr(options, name)
        if value is not None:
            requested[name] = value
    if options.environment:
        requested["environment"] = dict(options.environment)
    requested.update(options.cluster_options)
    offered = set(cluster_options.keys())
    for name, value in requested.items():
        if name not in offered:
            raise ValueError(
                f"the Gateway server offers no cluster option {name!r}; it offers: {', '.join(sorted(offered)) or 'none'}"
            )
        cluster_options[name] = value
    return cluster_options


def make_gateway_cluster(options: GatewayOptions, *, gateway_class: type | None = None) -> tuple[Any, Any]:
    """Create or join a Gateway cluster with the requested options; returns (gateway, cluster)."""
    gateway = make_gateway(options, gateway_class=gateway_class)
    if options.cluster_name is not None:
        cluster = gateway.connect(options.cluster_name, shutdown_on_close=options.shutdown_on_close)
        return gateway, cluster
    cluster_options = gateway_cluster_options(gateway, options)
    cluster = gateway.new_cluster(cluster_options=cluster_options, shutdown_on_close=options.shutdown_on_close)
    return gateway, cluster
