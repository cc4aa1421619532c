"""Flavour-tagging scale factors from the histograms of a calibration run.

Per model: the c-tag shape fit in CvsL x CvsB, the b-tag shape fit in BvsAll (pt, |eta|)
and the BvsL shape fit for b, c and light jets (fit.py), their statistical (toys.py) and method (systematics.py)
variations, working-point SFs from the same fits (wp.py), one correctionlib payload
``sf_<model>.json.gz`` (payload.py), diagnostics and plots (diagnostics.py) and, when the run
has pseudo-data with truth, the closure test (closure.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from advcalib.scalefactors import closure, diagnostics, payload
from advcalib.scalefactors.config import FitConfig, ScaleFactorConfig
from advcalib.scalefactors.derive import SHAPE_FITS, ModelScaleFactors, build_corrections, derive_model
from advcalib.scalefactors.templates import model_names

__all__ = ["FitConfig", "ModelScaleFactors", "ScaleFactorConfig", "derive_model", "derive_scale_factors"]

log = logging.getLogger(__name__)


def derive_scale_factors(result: dict, out_dir: str | Path, *, config: ScaleFactorConfig | None = None) -> dict:
    """Derive every model's SFs from a run's output and write payloads, diagnostics and plots.

    Writes ``sf_<model>.json.gz`` per model, ``diagnostics.json``, ``closure.json`` (only
    when the run has ``truth_hists`` for a model) and PNG plots into ``out_dir``, which is
    created if missing. Returns a JSON-ready summary: per model the payload path, the
    iterations and final chi2 of each fit, and the closure numbers.

    A model whose histograms have no entries (a run that selected no events) gets no
    payload: ``skipped`` maps it to the reason, which is logged as a warning. When no model
    is left, ``no_payload`` gives the reason, and ``diagnostics.json`` with that reason is the only
    file written.
    """
    config = config or ScaleFactorConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models, skipped = _models_with_entries(result, systematic=config.nominal_systematic)
    summary: dict = {"models": {}, "files": [], "skipped": skipped}
    if not models:
        if skipped:
            reason = f"no model has entries in the fitted histograms (models: {', '.join(skipped)})"
        else:
            reason = "the run's histograms contain no model"
        log.warning("no scale factors derived and no payload written, because %s, as in a run that selected no events",
                    reason)
        summary["no_payload"] = reason
        record = {"no_payload": reason, "skipped": skipped}
        summary["files"].append(str(diagnostics.write_json(record, out_dir / "diagnostics.json")))
        return summary
    records: dict = {}
    closures: dict = {}
    for model in models:
        sfs = derive_model(result, model, config=config)
        path = payload.write_payload(payload.correction_set(model, build_corrections(sfs)), out_dir / f"sf_{model}.json.gz")
        records[model] = {name: diagnostics.fit_record(getattr(sfs, name)) for name in SHAPE_FITS}
        entry = {"payload": str(path), **{k: _short(v) for k, v in records[model].items()}}
        if closure.has_truth(result, model):
            closures[model] = closure.run_closure(result, sfs, config=config)
            entry["closure"] = {name: _closure_numbers(c) for name, c in closures[model].items()}
        if config.plots:
            summary["files"] += [str(p) for p in diagnostics.plot_model(sfs, out_dir, closures.get(model))]
        summary["models"][model] = entry
        summary["files"].append(str(path))
        log.info("wrote %s", path)
    summary["files"].append(str(diagnostics.write_json(records, out_dir / "diagnostics.json")))
    if closures:
        summary["files"].append(str(diagnostics.write_json(closures, out_dir / "closure.json")))
    return summary


def _models_with_entries(result: dict, *, systematic: str) -> tuple[list[str], dict[str, str]]:
    """Split the run's models into those with entries in the fitted histograms and the skipped ones with a reason."""
    models = model_names(result)
    hists = result["hists"]
    with_entries, skipped = [], {}
    for model in models:
        names = [module.HISTOGRAM for module in SHAPE_FITS.values()]
        empty = [name for name in names if not _has_entries(hists[name], model, systematic)]
        if empty:
            skipped[model] = f"histograms {', '.join(empty)} have no '{systematic}' entries for this model"
            log.warning("model %s: %s; it gets no payload", model, skipped[model])
        else:
            with_entries.append(model)
    return with_entries, skipped


def _has_entries(histogram, model: str, systematic: str) -> bool:
    if model not in list(histogram.axes["model"]):
        return False
    of_model = histogram[{"model": model}]
    if not np.any(of_model.view(flow=True)["value"] != 0):
        return False
    if systematic not in list(of_model.axes["systematic"]):
        # Entries under other names only: templates.extract raises an error that names the missing systematic.
        return True
    return bool(np.any(of_model[{"systematic": systematic}].view(flow=True)["value"] != 0))


def _short(record: dict) -> dict:
    return {"n_iterations": record["n_iterations"], "converged": record["converged"],
            "chi2_first": record["chi2_per_iteration"][0], "chi2_final": min(record["chi2_per_iteration"])}


def _closure_numbers(result: dict) -> dict:
    return {key: result[key] for key in ("pull_stat", "pull_diff", "jsd", "compatibility_with_one")}
