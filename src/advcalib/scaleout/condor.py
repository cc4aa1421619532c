"""Plain HTCondor batch: split a fileset into jobs and write the submit file and job wrapper.

:func:`prepare_jobs` writes into ``out_dir``::

    advcalib.sub          submit file, filled from condor/advcalib.sub.in
    advcalib_job.sh       job wrapper, copied from condor/advcalib_job.sh
    job.env               arguments of ``advcalib run`` common to all jobs (bash)
    jobs.txt              job folders, one per line and one job each
    prepare.json          settings of this preparation, read back by ``advcalib merge``
    job_000/fileset.json  files of job 0, and so on (every input file in one job)

Each job runs ``advcalib run`` on its fileset and publishes ``job_NNN/hists.coffea``
last, by a rename. A present ``hists.coffea`` therefore always belongs to a job whose
histograms were saved completely.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

SUBMIT_TEMPLATE = "advcalib.sub.in"
WRAPPER = "advcalib_job.sh"


class CondorJobOptions(BaseModel):
    """Resources and environment of the batch jobs."""

    model_config = ConfigDict(extra="forbid")

    cpus: int = Field(1, ge=1, description="request_cpus of each job")
    memory: str = Field("4GB", description="request_memory of each job, e.g. '4GB'")
    disk: str = Field("4GB", description="request_disk of each job, e.g. '4GB'")
    env_tarball: Path | None = Field(None, description="tarball of a virtual environment (venv-pack) shipped with each job")
    image: str | None = Field(None, description="container image with advcalib installed, e.g. an unpacked /cvmfs image")
    x509_proxy: Path | None = Field(None, description="grid proxy; HTCondor transfers it and sets X509_USER_PROXY")
    directives: dict[str, str] = Field(default_factory=dict, description="extra submit-file lines, e.g. {'+JobFlavour': '\"workday\"'}")

    @model_validator(mode="after")
    def _one_environment(self) -> CondorJobOptions:
        if self.env_tarball is not None and self.image is not None:
            raise ValueError("choose one job environment: env_tarball or image, not both")
        return self


@dataclass(frozen=True)
class PreparedJobs:
    """Paths written by :func:`prepare_jobs`."""

    out_dir: Path
    submit_file: Path
    wrapper: Path
    job_dirs: list[Path]


def template_dir() -> Path:
    """Folder with the submit template and job wrapper: ``condor/`` of the source checkout.

    NOTE: the folder sits beside ``src/`` and is not installed with a wheel; pass
    ``templates=`` (``--templates``) when advcalib is installed from a wheel.
    """
    import advcalib

    return Path(advcalib.__file__).resolve().parents[2] / "condor"


def split_files(fileset: Mapping[str, Mapping[str, Any]], jobs: int) -> list[dict[str, dict[str, Any]]]:
    """Split a fileset into ``jobs`` filesets that list every file exactly once.

    Files keep their fileset order and go in contiguous, equally sized blocks (sizes
    differ by at most one), so a job mostly sees one dataset. Each job's dataset keeps
    its metadata; a ``truth`` mapping keeps only the job's own files. Raises
    ``ValueError`` when there are fewer files than jobs.
    """
    entries = [(dataset, path, tree) for dataset, spec in fileset.items() for path, tree in spec["files"].items()]
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if jobs > len(entries):
        raise ValueError(f"--jobs {jobs} is more than the {len(entries)} input files; use at most {len(entries)} jobs")
    base, extra = divmod(len(entries), jobs)
    parts: list[dict[str, dict[str, Any]]] = []
    start = 0
    for job in range(jobs):
        stop = start + base + (1 if job < extra else 0)
        part: dict[str, dict[str, Any]] = {}
        for dataset, path, tree in entries[start:stop]:
            spec = part.setdefault(dataset, {"files": {}, "metadata": dict(fileset[dataset].get("metadata") or {})})
            spec["files"][path] = tree
        for spec in part.values():
            truth = spec["metadata"].get("truth")
            if truth:
                spec["metadata"]["truth"] = {path: sidecar for path, sidecar in truth.items() if path in spec["files"]}
        parts.append(part)
        start = stop
    return parts


def prepare_jobs(
    fileset_path: Path,
    *,
    jobs: int,
    out_dir: Path,
    run_args: Sequence[str] = (),
    lumi: float | None = None,
    options: CondorJobOptions | None = None,
    templates: Path | None = None,
) -> PreparedJobs:
    """Write the per-job filesets, the submit file and the wrapper for a plain batch run.

    File paths in the job filesets are absolute (the fileset's relative paths resolve
    against its own folder). ``lumi`` defaults to the common luminosity of the data
    datasets of the whole fileset and is passed to every job, because a job holding only
    simulation could not find it. Raises ``FileExistsError`` for an existing job folder.
    """
    from advcalib.fileset import coffea_fileset, load_fileset
    from advcalib.run import resolve_lumi

    options = options or CondorJobOptions()
    templates = templates or template_dir()
    for name in (SUBMIT_TEMPLATE, WRAPPER):
        if not (templates / name).is_file():
            raise FileNotFoundError(f"{templates / name} not found; pass the condor/ folder of the advcalib sources as templates")
    datasets = load_fileset(fileset_path)
    lumi = resolve_lumi(datasets, lumi)
    parts = split_files(coffea_fileset(datasets), jobs)

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    job_dirs = [out_dir / f"job_{index:03d}" for index in range(len(parts))]
    existing = [path for path in job_dirs if path.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; choose a new --out folder or remove the old jobs")
    for job_dir, part in zip(job_dirs, parts):
        job_dir.mkdir()
        (job_dir / "fileset.json").write_text(json.dumps(part, indent=2) + "\n")

    wrapper = out_dir / WRAPPER
    shutil.copyfile(templates / WRAPPER, wrapper)
    wrapper.chmod(0o755)
    all_args = ["--lumi", repr(lumi), *run_args]
    (out_dir / "job.env").write_text(f"ADVCALIB_RUN_ARGS=({shlex.join(all_args)})\n")
    (out_dir / "jobs.txt").write_text("".join(f"{path}\n" for path in job_dirs))
    submit_file = out_dir / "advcalib.sub"
    submit_file.write_text(render_submit_file(templates / SUBMIT_TEMPLATE, out_dir=out_dir, options=options))
    record = {"fileset": str(fileset_path.resolve()), "jobs": [path.name for path in job_dirs], "lumi": lumi,
              "run_args": list(run_args), "options": options.model_dump(mode="json")}
    (out_dir / "prepare.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("prepared %d jobs in %s", len(job_dirs), out_dir)
    return PreparedJobs(out_dir=out_dir, submit_file=submit_file, wrapper=wrapper, job_dirs=job_dirs)


def render_submit_file(template: Path, *, out_dir: Path, options: CondorJobOptions) -> str:
    """Fill the submit template; ``$$`` in the template stands for a literal HTCondor ``$``."""
    inputs = ["$(job_dir)/fileset.json", str(out_dir / "job.env")]
    environment_lines: list[str] = []
    if options.env_tarball is not None:
        tarball = options.env_tarball.resolve()
        if not tarball.is_file():
            raise FileNotFoundError(f"environment tarball {tarball} not found; create it with venv-pack -o {tarball}")
        inputs.append(str(tarball))
        environment_lines.append(f'environment = "ADVCALIB_ENV_TARBALL={tarball.name}"')
    if options.image is not None:
        environment_lines.append(f'+SingularityImage = "{options.image}"')
    if options.x509_proxy is not None:
        proxy = options.x509_proxy.resolve()
        if not proxy.is_file():
            raise FileNotFoundError(f"x509 proxy {proxy} not found; run voms-proxy-init --voms cms --out {proxy}")
        environment_lines.append(f"x509userproxy = {proxy}")
        environment_lines.append("use_x509userproxy = true")
    extra = [f"{key} = {value}" for key, value in options.directives.items()]
    values = {
        "out_dir": str(out_dir),
        "wrapper": str(out_dir / WRAPPER),
        "cpus": str(options.cpus),
        "memory": options.memory,
        "disk": options.disk,
        "transfer_input_files": ", ".join(inputs),
        "environment": "\n".join(environment_lines) or "# no environment tarball or image: the job uses the submit node's environment",
        "extra_directives": "\n".join(extra) or "# no extra directives",
    }
    return string.Template(template.read_text()).substitute(values)
