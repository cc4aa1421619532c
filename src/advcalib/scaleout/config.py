"""Options of a scaled-out run: executor, cluster and chunking settings as pydantic models.

Options come from keyword arguments, from a YAML file with general ``defaults`` and
per-site sections under ``sites``, or from both (see :func:`load_options`). Every model
forbids unknown keys, so a misspelt option fails with its dotted name instead of being
ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

ExecutorName = Literal["iterative", "futures", "dask", "htcondor", "gateway"]
ModeName = Literal["runner", "dask-awkward"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DaskOptions(_Strict):
    """Local Dask cluster, or an existing scheduler to join."""

    workers: int = Field(1, ge=1, description="number of worker processes of the LocalCluster")
    threads_per_worker: int = Field(1, ge=1, description="threads of each worker")
    memory_limit: str = Field("2GB", description="memory limit of each worker, e.g. '4GB'")
    processes: bool = Field(True, description="run workers in separate processes (False: threads of this process)")
    scheduler_address: str | None = Field(
        None, description="address of a running scheduler, e.g. 'tcp://host:8786'; no LocalCluster is started"
    )
    dashboard_address: str | None = Field(None, description="dashboard address of the LocalCluster, e.g. ':8787'; None disables it")


class ScaleOptions(_Strict):
    """Worker count of a batch or Gateway cluster: a fixed number or adaptive bounds."""

    scale: int | None = Field(None, ge=1, description="fixed number of workers (jobs); excludes adapt_minimum/adapt_maximum")
    adapt_minimum: int | None = Field(None, ge=0, description="adaptive scaling: minimum number of workers")
    adapt_maximum: int | None = Field(None, ge=1, description="adaptive scaling: maximum number of workers")

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> ScaleOptions:
        adaptive = self.adapt_minimum is not None or self.adapt_maximum is not None
        if self.scale is not None and adaptive:
            raise ValueError("set either scale or adapt_minimum/adapt_maximum, not both")
        if self.adapt_maximum is not None and (self.adapt_minimum or 0) > self.adapt_maximum:
            raise ValueError(f"adapt_minimum {self.adapt_minimum} is larger than adapt_maximum {self.adapt_maximum}")
        return self

    def describe_scaling(self) -> str:
        if self.scale is not None:
            return f"{self.scale} workers"
        return f"adaptive {self.adapt_minimum or 0}..{self.adapt_maximum or 'unbounded'} workers"


class HTCondorOptions(ScaleOptions):
    """Dask workers as HTCondor jobs (dask_jobqueue.HTCondorCluster)."""

    cores: int = Field(1, ge=1, description="cores per job (RequestCpus)")
    memory: str = Field("4GB", description="memory per job (RequestMemory)")
    disk: str = Field("4GB", description="disk per job (RequestDisk)")
    processes: int = Field(1, ge=1, description="worker processes per job")
    job_extra_directives: dict[str, str] = Field(
        default_factory=dict, description="extra submit-file lines, e.g. {'+JobFlavour': '\"longlunch\"'}"
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="shell commands run before the worker starts, e.g. environment activation"
    )
    x509_proxy: Path | None = Field(
        None, description="grid proxy file; HTCondor transfers it and sets X509_USER_PROXY in the job"
    )
    log_directory: Path | None = Field(None, description="folder for the jobs' stdout, stderr and HTCondor log")
    python: str | None = Field(None, description="python executable on the worker node (default: this one)")
    worker_extra_args: list[str] = Field(default_factory=list, description="extra arguments of the dask worker command")
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the scheduler the jobs connect to, e.g. {'port': 8786, 'host': 'lxplus123'}"
    )
    death_timeout: float = Field(60.0, gt=0, description="seconds a worker waits for the scheduler before it exits")


class GatewayOptions(ScaleOptions):
    """Dask workers from a Dask Gateway server (dask_gateway.Gateway)."""

    address: str | None = Field(None, description="Gateway address (default: dask-gateway configuration)")
    proxy_address: str | None = Field(None, description="scheduler proxy address (default: dask-gateway configuration)")
    auth: Literal["kerberos", "jupyterhub", "basic"] | None = Field(
        None, description="authentication method (default: dask-gateway configuration)"
    )
    worker_cores: int | float | None = Field(None, gt=0, description="cores per worker (cluster option worker_cores)")
    worker_memory: float | None = Field(None, gt=0, description="memory per worker in GiB (cluster option worker_memory)")
    image: str | None = Field(None, description="container image of the workers (cluster option image)")
    environment: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the workers (cluster option environment)"
    )
    cluster_options: dict[str, Any] = Field(
        default_factory=dict, description="further server-specific cluster options, set by name"
    )
    cluster_name: str | None = Field(None, description="connect to this running Gateway cluster instead of creating one")
    shutdown_on_close: bool = Field(True, description="stop the Gateway cluster when the run ends")


class ExecutorOptions(_Strict):
    """Execution settings of a processor run: executor, mode, chunking, retries and clusters."""

    executor: ExecutorName = Field("iterative", description="iterative | futures | dask | htcondor | gateway")
    mode: ModeName = Field(
        "runner", description="runner: coffea Runner with per-chunk tasks; dask-awkward: one task per dask-awkward partition"
    )
    chunksize: int = Field(100_000, ge=1, description="maximum number of events per chunk")
    maxchunks: int | None = Field(None, ge=1, description="process at most this many chunks per dataset (testing)")
    retries: int = Field(3, ge=0, description="extra attempts of a failed chunk before it counts as failed")
    skip_bad_files: bool = Field(
        False, description="record unreadable files and failed chunks in the output's failed_files instead of raising"
    )
    treename: str = Field("Events", description="tree read when the fileset gives no tree name")
    schema_name: str = Field("PFNanoAODSchema", description="coffea.nanoevents schema class name")
    workers: int = Field(1, ge=1, description="worker processes of the futures executor")
    tree_reduction: int = Field(20, ge=2, description="number of chunk outputs added per reduction task")
    compression: int | None = Field(
        None,
        ge=0,
        description="LZ4 level of chunk outputs sent between Dask workers (None: uncompressed). coffea's reducer adds "
        "compressed outputs starting from the last one, so with a level the sums agree with the iterative executor "
        "only up to rounding",
    )
    ship_package: Literal["auto", "always", "never"] = Field(
        "auto",
        description="upload the advcalib package to Dask workers (auto: unless the workers run inside this process)",
    )
    status: bool = Field(False, description="show progress bars")
    dask: DaskOptions = Field(default_factory=DaskOptions, description="executor 'dask'")
    htcondor: HTCondorOptions = Field(default_factory=HTCondorOptions, description="executor 'htcondor'")
    gateway: GatewayOptions = Field(default_factory=GatewayOptions, description="executor 'gateway'")

    @property
    def uses_dask(self) -> bool:
        return self.executor in ("dask", "htcondor", "gateway")

    @model_validator(mode="after")
    def _mode_needs_dask(self) -> ExecutorOptions:
        if self.mode == "dask-awkward" and not self.uses_dask and self.executor != "iterative":
            raise ValueError(
                f"mode 'dask-awkward' runs on a Dask client or in this process; executor {self.executor!r} "
                "is for mode 'runner' only: use executor 'iterative', 'dask', 'htcondor' or 'gateway'"
            )
        return self


class OptionsFile(_Strict):
    """Layout of a scale-out YAML file: general defaults and per-site overrides."""

    defaults: dict[str, Any] = Field(default_factory=dict, description="options of every site")
    sites: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-site options over the defaults")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings merge key by key, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(error: ValidationError, *, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown option {key!r}; check its spelling against ExecutorOptions")
        else:
            lines.append(f"{source}: invalid option {key!r}: {item['msg']}")
    return "\n".join(lines)


def build_options(values: dict[str, Any], *, source: str = "options") -> ExecutorOptions:
    """Validate a mapping of options into :class:`ExecutorOptions`.

    Raises ``ValueError`` naming each unknown or invalid key with its dotted path.
    """
    try:
        return ExecutorOptions.model_validate(values)
    except ValidationError as error:
        raise ValueError(_format_validation_error(error, source=source)) from None


def load_options(
    path: str | Path | None = None,
    *,
    site: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ExecutorOptions:
    """Load options with the precedence overrides > ``sites[site]`` > ``defaults`` > built-in defaults.

    ``overrides`` contains values given on the command line, nested like the YAML file
    (e.g. ``{"dask": {"workers": 2}}``); ``None`` values in it are ignored. Raises
    ``ValueError`` for an unknown site, an unknown key or an invalid value, naming the file.
    """
    merged: dict[str, Any] = {}
    source = "options"
    if path is not None:
        source = str(path)
        layout = _read_options_file(Path(path))
        merged = dict(layout.defaults)
        if site is not None:
            if site not in layout.sites:
                known = ", ".join(sorted(layout.sites)) or "none"
                raise ValueError(f"{path}: site {site!r} not found; sites in this file: {known}")
            merged = deep_merge(merged, layout.sites[site])
            source = f"{path} (site {site})"
    elif site is not None:
        raise ValueError(f"site {site!r} requested without an options file; pass the YAML file that defines it")
    merged = deep_merge(merged, _drop_none(overrides or {}))
    options = build_options(merged, source=source)
    logger.debug("scale-out options from %s: %s", source, options.model_dump())
    return options


def _read_options_file(path: Path) -> OptionsFile:
    if not path.is_file():
        raise ValueError(f"scale-out options file {path} not found")
    with path.open() as stream:
        raw = yaml.safe_load(stream) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'defaults' and 'sites', found {type(raw).__name__}")
    try:
        return OptionsFile.model_validate(raw)
    except ValidationError as error:
        raise ValueError(_format_validation_error(error, source=str(path))) from None


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned
