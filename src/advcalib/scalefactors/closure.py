"""Closure of the shape fits on pseudo-data whose true flavour is known.

The true SF of flavour f in a bin group G is the pseudo-data shape of f over the MC shape
of f in f's target region. Both are OS-SS and normalised over the fitted bins, because the
fit keeps each flavour's yield over those bins:

    SF_true,G = (T_f,G / sum T_f) / (MC_f,G / sum MC_f)

with T from the run's ``truth_hists``. Two pulls are computed per fitted group:

- ``(SF - SF_true) / sigma_stat``, with sigma_stat the SF's statistical uncertainty. The
  truth shares the pseudo-data and MC fluctuations with the fit, so this pull is narrower
  than a unit Gaussian, more so in purer regions.
- ``(SF - SF_true) / sigma_diff``, with sigma_diff the spread of SF - SF_true over
  pseudo-experiments that vary every true flavour and the MC; its width should be near 1.

It also compares data with MC before and after the SFs by the JSD of each region's
projections (CvsL, CvsB from the c-tag map, BvsAll from the b-tag grid), and measures the
compatibility of the SFs with 1.
"""

from __future__ import annotations

import logging

import numpy as np

from advcalib.divergence import jsd
from advcalib.scalefactors import ctag
from advcalib.scalefactors.config import ScaleFactorConfig
from advcalib.scalefactors.derive import SHAPE_FITS, ModelScaleFactors, ShapeScaleFactors
from advcalib.scalefactors.grouping import group_sums
from advcalib.scalefactors.templates import MC_FLAVOURS, REGION_TARGET, Templates, Yields
from advcalib.scalefactors.toys import vary_yields

log = logging.getLogger(__name__)

#: Projections of each fit's grid compared by JSD: name -> grid axes summed.
PROJECTIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "ctag": {"CvsL": (1,), "CvsB": (0,)},
    "btag": {"BvsAll": (0, 1)},
    "bvsl": {"BvsL": ()},
}


def has_truth(result: dict, model: str) -> bool:
    """Return whether the run has truth histograms with entries for ``model``."""
    truth = result.get("truth_hists") or {}
    h = truth.get(ctag.HISTOGRAM)
    return h is not None and model in list(h.axes["model"]) and h[{"model": model}].sum(flow=True).value > 0


def truth_scale_factors(truth: Templates, templates: Templates, *, labels: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """True SF [F, *grid] on the fit's bin groups; NaN in bins that were not fitted."""
    out = np.full(fitted.shape, np.nan)
    for r, region in enumerate(templates.regions):
        f = MC_FLAVOURS.index(REGION_TARGET[region])
        mask = fitted[f]
        if not mask.any():
            continue
        n = int(labels[f].max()) + 1
        true_yield = np.where(mask, truth.mc.value[r, f], 0.0)
        mc_yield = np.where(mask, templates.mc.value[r, f], 0.0)
        t_sum, m_sum = true_yield.sum(), mc_yield.sum()
        if t_sum <= 0 or m_sum <= 0:
            continue
        t_group = group_sums(true_yield, labels[f], n) / t_sum
        m_group = group_sums(mc_yield, labels[f], n) / m_sum
        ratio = np.divide(t_group, m_group, out=np.full(n, np.nan), where=m_group > 0)
        out[f] = np.where(mask, ratio[labels[f]], np.nan)
    return out


def group_values(values: np.ndarray, shape: ShapeScaleFactors) -> dict[str, np.ndarray]:
    """Return one value per fitted group of each flavour, because the bins of a group share it."""
    out = {}
    for f, flavour in enumerate(MC_FLAVOURS):
        labels = shape.fit.grouping.labels[f]
        mask = shape.fit.fitted[f]
        groups, first = np.unique(labels[mask], return_index=True)
        out[flavour] = values[f][mask][first] if len(groups) else np.zeros(0)
    return out


def pull_summary(pulls: np.ndarray) -> dict[str, float]:
    """Count, fraction within +-1, mean and standard deviation of pulls."""
    pulls = pulls[np.isfinite(pulls)]
    if len(pulls) == 0:
        return {"n": 0, "within_1sigma": float("nan"), "mean": float("nan"), "width": float("nan")}
    return {
        "n": int(len(pulls)),
        "within_1sigma": float(np.mean(np.abs(pulls) < 1.0)),
        "mean": float(pulls.mean()),
        "width": float(pulls.std(ddof=1)) if len(pulls) > 1 else float("nan"),
    }


def jsd_before_after(templates: Templates, sf: np.ndarray, projections: dict[str, tuple[int, ...]], *,
                     min_events: float) -> dict[str, dict[str, dict[str, float]]]:
    """JSD of OS-SS data against MC before and after the SFs, per region and projection.

    Each entry also has ``floor``, the JSD expected from the statistical fluctuations of data
    and MC alone (see :func:`jsd_floor`), and ``significant``: whether the JSD before the SFs
    exceeds twice that floor, so that an improvement can be measured at all. Regions with
    fewer than ``min_events`` OS-SS data events are left out.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r, region in enumerate(templates.regions):
        data = templates.data.value[r]
        if data.sum() < min_events:
            continue
        mc = templates.mc.value[r].sum(axis=0)
        after = (templates.mc.value[r] * sf).sum(axis=0)
        out[region] = {}
        for name, axes in projections.items():
            p = data.sum(axis=axes)
            q = mc.sum(axis=axes)
            before_value = float(jsd(p, q))
            floor = jsd_floor(p, templates.data.variance[r].sum(axis=axes), q,
                              templates.mc.variance[r].sum(axis=0).sum(axis=axes))
            out[region][name] = {
                "before": before_value,
                "after": float(jsd(p, after.sum(axis=axes))),
                "floor": floor,
                "significant": bool(before_value > 2.0 * floor),
            }
    return out


def jsd_floor(data: np.ndarray, data_variance: np.ndarray, mc: np.ndarray, mc_variance: np.ndarray) -> float:
    """JSD (nats) expected between data and MC of the same shape from their statistical uncertainties.

    For small differences JSD ~ (1/8) sum_i (p_i - q_i)^2 / q_i, with p and q the normalised
    histograms. Its expectation is therefore (1/8) sum_i (var(d_i) / D^2 + var(m_i) / M^2) / q_i,
    summed over bins where data and MC are positive. An OS-SS subtraction raises it, because the
    variance of a subtracted bin exceeds its content.
    """
    keep = (data > 0) & (mc > 0)
    total_data, total_mc = data[keep].sum(), mc[keep].sum()
    if not keep.any() or total_data <= 0 or total_mc <= 0:
        return float("nan")
    q = mc[keep] / total_mc
    terms = (data_variance[keep] / total_data**2 + mc_variance[keep] / total_mc**2) / q
    return float(terms.sum() / 8.0)


def compatibility_with_one(shape: ShapeScaleFactors) -> dict[str, float]:
    """Chi2/ndf of (SF - 1) / sigma_stat over fitted groups, and the fraction within 1 sigma of 1."""
    z = np.concatenate(list(group_values((shape.fit.sf - 1.0) / shape.sigma, shape).values()))
    if len(z) == 0:
        return {"n": 0, "chi2_per_ndf": float("nan"), "within_1sigma": float("nan")}
    return {"n": int(len(z)), "chi2_per_ndf": float(np.mean(z**2)), "within_1sigma": float(np.mean(np.abs(z) < 1))}


def closure_shape(result: dict, shape: ShapeScaleFactors, module, *, model: str, config: ScaleFactorConfig,
                  projections: dict[str, tuple[int, ...]], min_events: float) -> dict:
    """Closure numbers of one shape fit (c-tag or b-tag)."""
    truth = module.read_templates(result, model=model, systematic=config.nominal_systematic, source="truth_hists")
    labels, fitted = shape.fit.grouping.labels, shape.fit.fitted
    true_sf = truth_scale_factors(truth, shape.templates, labels=labels, fitted=fitted)
    sigma_diff = _difference_spread(truth, shape, module, config=config)
    stat = group_values((shape.fit.sf - true_sf) / shape.sigma, shape)
    diff = group_values((shape.fit.sf - true_sf) / np.where(sigma_diff > 0, sigma_diff, np.nan), shape)
    return {
        "pull_stat": pull_summary(np.concatenate(list(stat.values()))),
        "pull_stat_per_flavour": {f: pull_summary(v) for f, v in stat.items()},
        "pull_diff": pull_summary(np.concatenate(list(diff.values()))),
        "jsd": jsd_before_after(shape.templates, shape.fit.sf, projections, min_events=min_events),
        "compatibility_with_one": compatibility_with_one(shape),
        "pulls": {f: v.tolist() for f, v in stat.items()},
        "pulls_diff": {f: v.tolist() for f, v in diff.items()},
        "truth_sf": {f: v.tolist() for f, v in group_values(true_sf, shape).items()},
        "fit_sf": {f: v.tolist() for f, v in group_values(shape.fit.sf, shape).items()},
        "sigma_stat": {f: v.tolist() for f, v in group_values(shape.sigma, shape).items()},
    }


def run_closure(result: dict, sfs: ModelScaleFactors, *, config: ScaleFactorConfig, min_events: float = 100.0) -> dict:
    """Run the closure of every shape fit of one model; see the module docstring."""
    return {
        name: closure_shape(result, getattr(sfs, name), module, model=sfs.model, config=config,
                            projections=PROJECTIONS[name], min_events=min_events)
        for name, module in SHAPE_FITS.items()
    }


def _difference_spread(truth: Templates, shape: ShapeScaleFactors, module, *, config: ScaleFactorConfig) -> np.ndarray:
    """Standard deviation of SF - SF_true over pseudo-experiments of the true flavours and the MC."""
    rng = np.random.default_rng(config.seed + 1)
    labels, fitted = shape.fit.grouping.labels, shape.fit.fitted
    diffs = []
    for _ in range(config.n_toys):
        mc_os, mc_ss = vary_yields(truth.mc_os, rng), vary_yields(truth.mc_ss, rng)
        true = Templates(truth.regions, _flavour_sum(mc_os), _flavour_sum(mc_ss), mc_os, mc_ss, truth.edges, truth.axis_names)
        sim = Templates(truth.regions, true.data_os, true.data_ss, vary_yields(shape.templates.mc_os, rng),
                        vary_yields(shape.templates.mc_ss, rng), truth.edges, truth.axis_names)
        fit = module.fit(sim, config=config.fit, grouping=shape.fit.grouping)
        diffs.append(fit.sf - truth_scale_factors(true, sim, labels=labels, fitted=fitted))
    diffs = np.where(fitted, np.stack(diffs), 0.0)
    return np.where(fitted, np.std(diffs, axis=0, ddof=1), np.nan)


def _flavour_sum(yields: Yields) -> Yields:
    return Yields(yields.value.sum(axis=1), yields.variance.sum(axis=1))
