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
    """
    config = config or ScaleFactorConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = model_names(result)
    if not models:
        raise ValueError("the run's histograms contain no model; run the processor with at least one tagger")
    summary: dict = {"models": {}, "files": []}
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


def _short(record: dict) -> dict:
    return {"n_iterations": record["n_iterations"], "converged": record["converged"],
            "chi2_first": record["chi2_per_iteration"][0], "chi2_final": min(record["chi2_per_iteration"])}


def _closure_numbers(result: dict) -> dict:
    return {key: result[key] for key in ("pull_stat", "pull_diff", "jsd", "compatibility_with_one")}
