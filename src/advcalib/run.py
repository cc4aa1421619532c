"""A calibration run as a list of steps: process, normalise, save, then the derived outputs.

:data:`STEPS` names them in order. ``process`` runs :class:`CalibrationProcessor` over
the fileset with :func:`advcalib.scaleout.run_processor`, ``normalise`` scales simulation to
cross-section times luminosity over the sum of generator weights, ``save`` writes
``hists.coffea`` and ``cutflow.json``. The steps after it (JSD, efficiencies, scale factors,
plots) each read the saved result. An error in one of these later steps is logged with its
traceback and listed in ``failed_steps``, and the other steps still run, because
``hists.coffea`` is already written and each step can be redone from it. The run ends by
writing ``manifest.json``, the list of files it wrote (see :mod:`advcalib.manifest`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from advcalib import divergence, efficiency, manifest, plotting, scalefactors
from advcalib.atomic import save_atomic, write_json_atomic
from advcalib.fileset import Dataset, coffea_fileset, load_fileset
from advcalib.naming import AliasedPFNanoAODSchema
from advcalib.preflight import check_fileset, run_report
from advcalib.processor import DEFAULT_MODELS, STORED_MODEL, CalibrationProcessor, cached_tagger
from advcalib.resume import ChunkStore, ResumableProcessor
from advcalib.scaleout import FAILED_FILES_KEY, ExecutorOptions, run_processor

logger = logging.getLogger(__name__)

#: A step of a run: reads and extends the shared state, records its files in the summary.
StepFunction = Callable[[dict[str, Any], "RunSummary"], None]

#: Source recorded for the model whose values come from the file.
STORED_SOURCE = "Jet_btagDeepFlav* branches of the input files"


class RunConfig(BaseModel):
    """Options of one calibration run."""

    model_config = ConfigDict(extra="forbid")

    fileset: Path = Field(description="fileset JSON (see advcalib.fileset)")
    out: Path = Field(description="output folder; must be empty or new unless force is set")
    models: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MODELS), description="model name -> tagger source")
    scaleout: ExecutorOptions = Field(default_factory=ExecutorOptions,
                                      description="executor, mode, chunking, retries and cluster settings")
    limit_files: int | None = Field(None, gt=0, description="at most this many files per dataset")
    lumi: float | None = Field(None, gt=0, description="luminosity in /pb; default: from the data datasets")
    force: bool = Field(False, description="write into a non-empty output folder")
    resume: bool = Field(False, description="reuse the finished chunks of an interrupted run saved in out/.chunks")
    device: str | None = Field(None, description="torch device of the taggers; default CUDA when available")


@dataclass
class RunSummary:
    """Summary of a run: output files, skipped and failed steps, step times and the result."""

    out: Path
    files: list[Path] = field(default_factory=list)
    failed_steps: dict[str, str] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    jsd: dict[str, Any] | None = None


def check_output(out: Path, *, force: bool) -> None:
    """Raise ``FileExistsError`` unless ``out`` is new, an empty folder, or ``force`` is set; changes nothing."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(
            f"output folder {out} is not empty; choose another --out, or pass --force to replace "
            f"the files that the earlier run listed in {manifest.MANIFEST_NAME}"
        )


def prepare_output(out: Path, *, force: bool, keep: Sequence[Path] = ()) -> None:
    """Create ``out``; with ``force``, first remove the files of the earlier run in it.

    The earlier run's files are those listed in ``out/manifest.json`` (see
    :mod:`advcalib.manifest`). Every other entry is left in place and named in a warning,
    except the entries in ``keep`` (such as an input folder inside ``out``). Without a
    manifest nothing is removed. A non-empty folder without ``force`` raises
    ``FileExistsError`` and nothing is removed.
    """
    check_output(out, force=force)
    if out.is_dir():
        removed = manifest.remove_listed(out)
        if removed:
            logger.info("removed %d files of the earlier run in %s", len(removed), out)
        kept = {path.resolve() for path in keep}
        left = sorted(entry.name for entry in out.iterdir() if entry.resolve() not in kept)
        if left:
            logger.warning("%s contains %d entries that no %s lists, left in place and not part of this run: %s",
                           out, len(left), manifest.MANIFEST_NAME, ", ".join(left))
    out.mkdir(parents=True, exist_ok=True)


def run_calibration(config: RunConfig) -> RunSummary:
    """Run every step of :data:`STEPS` and return the summary.

    The fileset, the luminosity and every model are checked before the output folder is
    created or cleared, so a run that fails on them leaves the folder as it was.
    """
    check_output(config.out, force=config.force or config.resume)
    datasets = calibration_datasets(load_fileset(config.fileset))
    resolve_lumi(datasets, config.lumi)  # a missing luminosity fails before any event is read
    for name, source in config.models.items():
        logger.info("model %s: %s", name, source)
        cached_tagger(source, config.device)  # fails here, before any event is read
    preflight = check_fileset(datasets, need_deepjet_inputs=bool(config.models), missing_inputs="warn",
                              skip_bad_files=config.scaleout.skip_bad_files, limit_files=config.limit_files)
    preflight.raise_for_errors()  # reads only file headers, so it too fails before any event is read
    created = not config.out.exists()
    if config.resume:  # keep the saved chunks; ResumableProcessor checks that they belong to this run
        config.out.mkdir(parents=True, exist_ok=True)
    else:
        prepare_output(config.out, force=config.force, keep=(config.fileset.parent,))
    summary = RunSummary(out=config.out)
    state: dict[str, Any] = {"config": config, "datasets": preflight.usable(datasets), "preflight": preflight}
    _run_recorded(STEPS, state, summary, created=created)
    return summary


def finish(result: dict[str, Any], out_dir: str | Path) -> RunSummary:
    """Save a normalised result into ``out_dir`` and run the steps after ``normalise``.

    This is what a run does once its histograms are filled and scaled, so merged outputs
    of several jobs end up with the same files as a single run.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(out=out, result=result)
    names = [name for name, _ in STEPS]
    _run_recorded(STEPS[names.index("save"):], {"result": result}, summary, created=created)
    return summary


def _run_recorded(steps: Sequence[tuple[str, StepFunction]], state: dict[str, Any], summary: RunSummary, *, created: bool) -> None:
    """Run ``steps``, then list the files they wrote in ``summary.files`` and the manifest.

    When a required step raises before anything is written, a folder that this run
    created is removed again instead of being left empty.
    """
    before = manifest.snapshot(summary.out)
    try:
        _run_steps(steps, state, summary)
    except BaseException:
        written = manifest.written_since(summary.out, before)
        if written or not created:
            manifest.write_manifest(summary.out, written, failed_steps=summary.failed_steps)
        elif not any(summary.out.iterdir()):
            summary.out.rmdir()
        raise
    written = manifest.written_since(summary.out, before)
    summary.files = [summary.out / name for name in written]
    manifest.write_manifest(summary.out, written, failed_steps=summary.failed_steps)


def _run_steps(steps: Sequence[tuple[str, StepFunction]], state: dict[str, Any], summary: RunSummary) -> None:
    for name, step in steps:
        start = time.perf_counter()
        if name in REQUIRED_STEPS:
            step(state, summary)
        else:
            _run_derived(name, step, state, summary)
        summary.step_seconds[name] = time.perf_counter() - start


def _run_derived(name: str, step: StepFunction, state: dict[str, Any], summary: RunSummary) -> None:
    try:
        step(state, summary)
    except Exception as error:  # noqa: BLE001 - the saved histograms stay valid; the step can be redone
        logger.exception("step %s failed; the histograms are saved in %s and the step can be redone from them", name, summary.out)
        summary.failed_steps[name] = f"{type(error).__name__}: {error}"


def calibration_datasets(datasets: Mapping[str, Dataset]) -> dict[str, Dataset]:
    """Datasets with role ``calibration``; training datasets are not processed."""
    kept = {name: ds for name, ds in datasets.items() if ds.metadata.role == "calibration"}
    for name in sorted(set(datasets) - set(kept)):
        logger.info("dataset %s has role 'training'; not processed", name)
    if not kept:
        raise ValueError("the fileset has no dataset with role 'calibration'")
    return kept


def step_process(state: dict[str, Any], summary: RunSummary) -> None:
    config: RunConfig = state["config"]
    fileset = coffea_fileset(state["datasets"], limit_files=config.limit_files)
    instance = CalibrationProcessor(models=config.models, device=config.device)
    models = [source for name, source in config.models.items() if name != STORED_MODEL]
    resumable = ResumableProcessor(instance, out=config.out, resume=config.resume)
    resumable.prepare()
    state["raw"] = run_processor(resumable, fileset, config.scaleout, models=models, schema=AliasedPFNanoAODSchema)
    state["selections"] = instance.selections
    state["chunks"] = resumable.summary


def step_normalise(state: dict[str, Any], summary: RunSummary) -> None:
    config: RunConfig = state["config"]
    result = normalise(state["raw"], state["datasets"], lumi=config.lumi, models=config.models,
                       selections=state["selections"], limited=config.limit_files is not None)
    state["result"] = result
    summary.result = state["result"]


def normalise(
    raw: Mapping[str, Any],
    datasets: Mapping[str, Dataset],
    *,
    lumi: float | None,
    models: Mapping[str, str],
    selections: Sequence[Any] = (),
    limited: bool = False,
) -> dict[str, Any]:
    """Scale each simulated dataset by xsec * lumi / sumw and build the saved result.

    ``sumw`` is the metadata value, or the processed sum of genWeight when the metadata
    has none or when ``limited`` (only some files processed). ``lumi`` defaults to the
    data datasets' common luminosity. Values and variances of every histogram slice of
    the dataset scale by norm and norm squared. ``selections`` are recorded by identity
    and cut values, so merged outputs can check that they agree.
    """
    lumi = resolve_lumi(datasets, lumi)
    hists = raw["hists"]
    info: dict[str, dict[str, Any]] = {}
    for name, dataset in datasets.items():
        meta = dataset.metadata.model_dump()
        processed = float(raw["sumw"].get(name, 0.0))
        if meta["is_data"]:
            norm = 1.0
        else:
            sumw = processed if (meta["sumw"] is None or limited) else meta["sumw"]
            norm = meta["xsec"] * lumi / sumw if sumw > 0 else 0.0
            if sumw <= 0:
                logger.warning("dataset %s: sum of weights %g; its histograms are set to zero", name, sumw)
        scale_dataset(hists, name, norm)
        info[name] = meta | {"norm": norm, "sumw_processed": processed, "n_events": int(raw["n_events"].get(name, 0))}
    skipped = sorted(raw.get("skipped_models", set()))
    return {
        "hists": hists,
        "truth_hists": raw["truth_hists"],
        "cutflow": raw["cutflow"],
        "datasets": info,
        "models": {STORED_MODEL: STORED_SOURCE} | {name: str(source) for name, source in models.items()},
        "lumi": lumi,
        "skipped_models": [{"dataset": d, "file": f, "reason": r} for d, f, r in skipped],
        FAILED_FILES_KEY: dict(raw.get(FAILED_FILES_KEY, {})),
        "selections": {f"{s.name}/{s.channel}": {"identity": s.identity, "cuts": s.cuts.values()} for s in selections},
    }


def resolve_lumi(datasets: Mapping[str, Dataset], lumi: float | None) -> float:
    """Luminosity in /pb: the given value, else the one value the data datasets share."""
    if lumi is not None:
        return float(lumi)
    values = {name: ds.metadata.lumi for name, ds in datasets.items() if ds.metadata.is_data and ds.metadata.lumi}
    if len(set(values.values())) == 1:
        return float(next(iter(values.values())))
    if not values:
        raise ValueError("no luminosity: add 'lumi' (/pb) to the metadata of a data dataset or pass --lumi")
    listed = ", ".join(f"{name}: {value}" for name, value in values.items())
    raise ValueError(f"data datasets disagree on the luminosity ({listed}); pass --lumi")


def scale_dataset(hists: Mapping[str, Any], dataset: str, norm: float) -> None:
    """Multiply the values of ``dataset`` by ``norm`` and the variances by its square, in place."""
    for h in hists.values():
        axis = h.axes["dataset"]
        if dataset not in axis:
            continue
        view = h.view(flow=True)
        index = axis.index(dataset)
        view.value[index] *= norm
        view.variance[index] *= norm * norm


def step_save(state: dict[str, Any], summary: RunSummary) -> None:
    out = summary.out
    result = state["result"]
    if "preflight" in state:
        report = run_report(preflight=state["preflight"], raw=state["raw"], chunks=state.get("chunks"))
        result[FAILED_FILES_KEY] = report["failed_files"]
        write_json_atomic(out / "run_report.json", report)
    save_atomic(result, out / "hists.coffea")
    write_json_atomic(out / "cutflow.json", result["cutflow"])
    ChunkStore(out).remove()  # hists.coffea now contains what the per-chunk outputs contained
    summary.files += [out / "hists.coffea", out / "cutflow.json"]


def step_divergence(state: dict[str, Any], summary: RunSummary) -> None:
    table = divergence.jsd_table(state["result"])
    summary.jsd = table
    state["jsd"] = table
    summary.files += divergence.write_jsd_table(table, summary.out)


def step_efficiency(state: dict[str, Any], summary: RunSummary) -> None:
    rows = efficiency.efficiency_table(state["result"])
    summary.files.append(efficiency.write_efficiency(rows, summary.out))


def step_scalefactors(state: dict[str, Any], summary: RunSummary) -> None:
    state["scalefactors"] = scalefactors.derive_scale_factors(state["result"], summary.out)


def step_plots(state: dict[str, Any], summary: RunSummary) -> None:
    summary.files += plotting.plot_all(state["result"], summary.out, state.get("jsd"))


#: Steps whose failure stops the run; the others only record their error.
REQUIRED_STEPS: frozenset[str] = frozenset({"process", "normalise", "save"})

#: The steps of a run, in order.
STEPS: tuple[tuple[str, StepFunction], ...] = (
    ("process", step_process),
    ("normalise", step_normalise),
    ("save", step_save),
    ("divergence", step_divergence),
    ("efficiency", step_efficiency),
    ("scalefactors", step_scalefactors),
    ("plots", step_plots),
)
