"""Command-line options of the scale-out executors, for any subcommand that runs a processor.

``add_scaleout_arguments(parser)`` adds the options; ``options_from_args(args)`` turns
the parsed values into :class:`ExecutorOptions` with the precedence command line >
``--site`` section > ``defaults`` of ``--scaleout-config`` > built-in defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advcalib.scaleout.config import ExecutorOptions, load_options


def add_scaleout_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the executor, mode, cluster and failure-handling options to ``parser``."""
    group = parser.add_argument_group("scale-out")
    group.add_argument("--scaleout-config", type=Path, default=None, help="YAML file with 'defaults' and per-site 'sites' options")
    group.add_argument("--site", default=None, help="site section of --scaleout-config to use, e.g. lxplus or coffea-casa")
    group.add_argument("--executor", choices=("iterative", "futures", "dask", "htcondor", "gateway"), default=None,
                       help="where chunks run (default: iterative)")
    group.add_argument("--mode", choices=("runner", "dask-awkward"), default=None,
                       help="runner: coffea Runner, one task per chunk; dask-awkward: one task per dask-awkward partition")
    group.add_argument("--chunksize", type=int, default=None, help="events per chunk (default: 100000)")
    group.add_argument("--retries", type=int, default=None, help="extra attempts of a failed chunk (default: 3)")
    group.add_argument("--skip-bad-files", action="store_true", default=None,
                       help="list unreadable files and failed chunks in the output's failed_files instead of stopping")
    group.add_argument("--workers", type=int, default=None, help="workers of the futures executor or of the local Dask cluster")
    group.add_argument("--threads-per-worker", type=int, default=None, help="threads of each local Dask worker")
    group.add_argument("--memory-limit", default=None, help="memory of each local Dask worker, e.g. 4GB")
    group.add_argument("--scheduler-address", default=None, help="join this running Dask scheduler instead of a LocalCluster")
    group.add_argument("--scale", type=int, default=None, help="fixed number of HTCondor or Gateway workers")
    group.add_argument("--adapt-min", type=int, default=None, help="adaptive scaling: minimum HTCondor or Gateway workers")
    group.add_argument("--adapt-max", type=int, default=None, help="adaptive scaling: maximum HTCondor or Gateway workers")
    group.add_argument("--x509-proxy", type=Path, default=None, help="grid proxy passed to HTCondor workers")
    group.add_argument("--log-directory", type=Path, default=None, help="folder for HTCondor worker logs")
    group.add_argument("--gateway-address", default=None, help="Dask Gateway address")


def options_from_args(args: argparse.Namespace) -> ExecutorOptions:
    """Build :class:`ExecutorOptions` from parsed arguments; unset options fall back to the file.

    ``--workers`` applies to the executor in effect (futures or dask), which may come
    from the site section. ``--scale`` replaces adaptive bounds from the file and
    ``--adapt-min``/``--adapt-max`` replace a fixed scale, for HTCondor and Gateway alike.
    """
    overrides: dict[str, Any] = {
        "executor": args.executor,
        "mode": args.mode,
        "chunksize": args.chunksize,
        "retries": args.retries,
        "skip_bad_files": args.skip_bad_files,
        "dask": {
            "threads_per_worker": args.threads_per_worker,
            "memory_limit": args.memory_limit,
            "scheduler_address": args.scheduler_address,
        },
        "htcondor": {"x509_proxy": args.x509_proxy, "log_directory": args.log_directory},
        "gateway": {"address": args.gateway_address},
    }
    options = load_options(args.scaleout_config, site=args.site, overrides=overrides)
    updates: dict[str, Any] = {}
    if args.workers is not None:
        if options.executor == "dask":
            updates["dask"] = options.dask.model_copy(update={"workers": args.workers})
        else:
            updates["workers"] = args.workers
    scaling = _scaling_update(args)
    if scaling:
        for section in ("htcondor", "gateway"):
            values = getattr(options, section).model_dump() | scaling
            updates[section] = type(getattr(options, section)).model_validate(values)
    return ExecutorOptions.model_validate(options.model_dump() | {key: _dump(value) for key, value in updates.items()})


def _scaling_update(args: argparse.Namespace) -> dict[str, Any]:
    if args.scale is not None:
        return {"scale": args.scale, "adapt_minimum": None, "adapt_maximum": None}
    if args.adapt_min is not None or args.adapt_max is not None:
        return {"scale": None, "adapt_minimum": args.adapt_min, "adapt_maximum": args.adapt_max}
    return {}


def _dump(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value
