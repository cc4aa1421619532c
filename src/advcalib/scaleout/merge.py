"""Merge the outputs of several jobs into the output of one run, and redo the later steps.

Job outputs follow the layout of a run's ``hists.coffea``: ``hists`` and
``truth_hists`` (add), ``cutflow`` (counts add), ``datasets`` (metadata must agree),
``models`` and ``lumi`` (must agree), and the lists ``skipped_models`` and
``failed_files`` (joined).

Normalisation: a simulated dataset is scaled by ``norm = xsec * lumi / sumw`` in each
job. When the fileset gives ``sumw``, every job applies the same norm and the scaled
histograms add directly. Without it each job divides by its own processed sum of
weights. The merge therefore rescales each job's slice by ``norm_total / norm_job``
before adding, with ``norm_total = xsec * lumi / (sum of the jobs' sumw_processed)``,
and the result equals one run over all files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coffea.processor import accumulate
from coffea.util import load, save

logger = logging.getLogger(__name__)

#: Per-dataset entries that differ between jobs by construction; everything else must agree.
PER_JOB_DATASET_KEYS = frozenset({"norm", "sumw_processed", "n_events"})


class MergeError(ValueError):
    """Job outputs that cannot be merged; the message names the files and the key."""


def load_outputs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Load job outputs saved with ``coffea.util.save``; raises for a missing file."""
    if not paths:
        raise MergeError("no job outputs given; pass DIR/job_*/hists.coffea")
    outputs = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"job output {path} not found")
        try:
            outputs.append(load(str(path)))
        except Exception as error:  # coffea.util.load raises whatever the decompressor or pickle raises
            raise MergeError(f"job output {path} cannot be read ({type(error).__name__}: {error}); "
                             "rerun that job or leave its file out") from error
    return outputs


def merge_outputs(outputs: Sequence[Mapping[str, Any]], *, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Merge job outputs (see the module docstring for the rules); ``names`` label them in errors."""
    names = list(names or [f"output {index}" for index in range(len(outputs))])
    lumi = _agree([output.get("lumi") for output in outputs], names, key="lumi")
    models = _agree([output.get("models") for output in outputs], names, key="models")
    datasets = merge_dataset_info(outputs, names, lumi=lumi)
    rescaled = [_rescale_job(output, datasets) for output in outputs]

    merged: dict[str, Any] = {
        "hists": accumulate([output["hists"] for output in rescaled]),
        "truth_hists": accumulate([output.get("truth_hists", {}) for output in outputs]),
        "cutflow": accumulate([output.get("cutflow", {}) for output in outputs]),
        "datasets": datasets,
        "models": models,
        "lumi": lumi,
        "selections": _agree([output.get("selections") for output in outputs], names, key="selections"),
    }
    merged["skipped_models"] = _join_unique(output.get("skipped_models", []) for output in outputs)
    failed: dict[str, list[str]] = {}
    for output in outputs:
        for filename, reasons in (output.get("failed_files") or {}).items():
            failed.setdefault(filename, []).extend(reasons)
    merged["failed_files"] = failed
    unknown = sorted({key for output in outputs for key in output} - set(merged))
    if unknown:
        raise MergeError(f"job outputs contain keys this merge does not know how to combine: {', '.join(unknown)}")
    return merged


def merge_dataset_info(
    outputs: Sequence[Mapping[str, Any]], names: Sequence[str], *, lumi: float
) -> dict[str, dict[str, Any]]:
    """Combined ``datasets`` entry: metadata checked for agreement, counts added, norm recomputed."""
    combined: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for output, name in zip(outputs, names):
        for dataset, info in output.get("datasets", {}).items():
            fixed = {key: value for key, value in info.items() if key not in PER_JOB_DATASET_KEYS}
            if dataset not in combined:
                combined[dataset] = dict(info)
                sources[dataset] = name
                continue
            before = {key: value for key, value in combined[dataset].items() if key not in PER_JOB_DATASET_KEYS}
            for key in sorted(set(before) | set(fixed)):
                if _normalised_truth(key, before.get(key)) != _normalised_truth(key, fixed.get(key)):
                    raise MergeError(
                        f"dataset {dataset!r}: metadata {key!r} is {before.get(key)!r} in {sources[dataset]} "
                        f"but {fixed.get(key)!r} in {name}; merge only outputs of one fileset"
                    )
            for key in ("sumw_processed", "n_events"):
                if key in info:
                    combined[dataset][key] = combined[dataset].get(key, 0) + info[key]
            if "truth" in info and info["truth"]:
                combined[dataset]["truth"] = {**(combined[dataset].get("truth") or {}), **info["truth"]}
    for dataset, info in combined.items():
        info["norm"] = total_norm(info, lumi=lumi)
    return combined


def _normalised_truth(key: str, value: Any) -> Any:
    # Each job keeps only its own files' truth sidecars, so the mappings differ by design.
    return None if key == "truth" else value


def total_norm(info: Mapping[str, Any], *, lumi: float) -> float:
    """Norm of a dataset over all jobs: 1 for data, ``xsec * lumi / sumw`` for simulation."""
    if info.get("is_data"):
        return 1.0
    sumw = info.get("sumw") or info.get("sumw_processed", 0.0)
    return float(info["xsec"]) * lumi / sumw if sumw > 0 else 0.0


def _rescale_job(output: Mapping[str, Any], datasets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from advcalib.run import scale_dataset

    hists = {name: h.copy() for name, h in output["hists"].items()}
    for dataset, info in output.get("datasets", {}).items():
        job_norm = info.get("norm", 1.0)
        target = datasets[dataset]["norm"]
        if job_norm == target:
            continue
        if job_norm == 0:
            raise MergeError(f"dataset {dataset!r} has norm 0 in one job; its histograms cannot be rescaled")
        scale_dataset(hists, dataset, target / job_norm)
    return {**output, "hists": hists}


def _agree(values: Sequence[Any], names: Sequence[str], *, key: str) -> Any:
    first = values[0]
    for value, name in zip(values[1:], names[1:]):
        if value != first:
            raise MergeError(f"{key!r} is {first!r} in {names[0]} but {value!r} in {name}; merge only outputs of one run")
    return first


def _join_unique(lists: Any) -> list[Any]:
    joined: list[Any] = []
    for items in lists:
        for item in items:
            if item not in joined:
                joined.append(item)
    return joined


def missing_jobs(out_dir: Path, paths: Sequence[Path]) -> list[str]:
    """Jobs listed in ``out_dir/prepare.json`` whose ``hists.coffea`` is not among ``paths``."""
    record = out_dir / "prepare.json"
    if not record.is_file():
        return []
    given = {Path(path).resolve() for path in paths}
    jobs = json.loads(record.read_text())["jobs"]
    return [job for job in jobs if (out_dir / job / "hists.coffea").resolve() not in given]


def finish(result: dict[str, Any], out_dir: Path) -> Any:
    """Save the merged result and redo the downstream steps (JSD, efficiencies, scale factors, plots).

    Uses ``advcalib.run.finish(result, out_dir)`` when run.py provides it; otherwise runs
    the steps of ``advcalib.run.STEPS`` from ``save`` on, which is what a run does after
    processing and normalising.
    """
    from advcalib import run

    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(run, "finish"):
        return run.finish(result, out_dir)
    summary = run.RunSummary(out=out_dir, result=result)
    state: dict[str, Any] = {"result": result}
    names = [name for name, _ in run.STEPS]
    for name, step in run.STEPS[names.index("save"):]:
        logger.info("merge: step %s", name)
        step(state, summary)
    return summary


def save_merged(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Write only the merged ``hists.coffea`` (without the downstream steps)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "hists.coffea"
    save(dict(result), str(path))
    return path
