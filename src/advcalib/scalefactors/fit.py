"""Iterative per-flavour shape fit shared by the c-tag and b-tag scale factors.

Method (the iterative fit of the CMS BTV shape calibrations, here for all three flavours at
once): MC is normalised to data in each region, so the SFs correct shapes only. Starting
from SF = 1, the regions are visited in order of their target-flavour purity; in region r
with target flavour f, each bin group G gets

    ratio_G = (data_G - k * sum_{g != f} SF_g MC_g,G) / MC_f,G

(k = 1 nominally, 1 +- 20 % for the contamination systematic) and the damped update
SF_f,G += rate * (ratio_G - SF_f,G). One pass over all regions is an iteration. The fit
stops when the global chi2 of data against the SF-weighted MC (all regions, all bins) no
longer improves by the relative tolerance, and it keeps the SFs of the best chi2. Groups with a target
purity below the minimum, too few data events, an expected relative uncertainty above the
limit or a non-positive ratio keep SF = 1. Because each flavour's yield is preserved, a
flavour with a single usable group has no shape information left and keeps SF = 1 too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.grouping import adaptive_groups, group_sums, relative_uncertainty
from advcalib.scalefactors.templates import MC_FLAVOURS, REGION_TARGET, Templates, Yields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grouping:
    """Bin groups of each flavour: ``labels`` [F, *grid] (-1: flavour without a region) and usable groups."""

    labels: np.ndarray
    usable: list[np.ndarray]


@dataclass
class FitResult:
    """Fitted SFs [F, *grid], which bins were fitted, and the convergence record."""

    sf: np.ndarray
    fitted: np.ndarray
    grouping: Grouping
    chi2: list[float] = field(default_factory=list)
    n_iterations: int = 0
    converged: bool = False
    normalisation: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


def fit_shape(
    templates: Templates,
    *,
    config: FitConfig,
    levels: list[tuple[int, ...]],
    grouping: Grouping | None = None,
) -> FitResult:
    """Fit per-flavour shape SFs to the OS-SS templates; see the module docstring for the method.

    ``grouping`` fixes the bin groups (the pseudo-experiments reuse the nominal ones);
    without it the groups are built adaptively from the templates. Only a fit without
    ``grouping`` (the central fit) logs an empty region, a single usable group and
    non-convergence at info or warning level. Refits log them at debug level, because one
    derivation runs hundreds of refits and the central fit has already reported the condition.
    """
    central = grouping is None
    info_level = logging.INFO if central else logging.DEBUG
    warning_level = logging.WARNING if central else logging.DEBUG
    data = templates.data
    mc, norm = _normalise(data, templates.mc)
    targets = _targets(templates.regions, data, mc, level=warning_level)
    if grouping is None:
        grouping = build_grouping(data, mc, targets=targets, config=config, levels=levels)
    # A refit reuses the central fit's groups: a flavour that had no groups there (its
    # region was empty) stays at 1 even if a pseudo-experiment gives the region entries.
    targets = [(region, flavour) for region, flavour in targets if grouping.labels[flavour].max() >= 0]
    sf = np.ones(mc.value.shape[1:])
    chi2 = [global_chi2(data, mc, sf, targets=targets, contamination_scale=config.contamination_scale)]
    converged = False
    iterations = 0
    for iterations in range(1, config.max_iterations + 1):
        trial = sf.copy()
        for region, flavour in targets:
            _update(trial, region, flavour, data, mc, grouping, config)
        value = global_chi2(data, mc, trial, targets=targets, contamination_scale=config.contamination_scale)
        chi2.append(value)
        if value < chi2[-2]:
            sf = trial
        if chi2[-2] - value <= config.tolerance * chi2[-2]:
            converged = True
            break
    if not converged:
        log.log(warning_level, "shape fit did not converge in %d iterations (chi2 %s)", config.max_iterations, chi2[-3:])
    fitted = _fitted_bins(sf, data, mc, grouping, targets, config, level=info_level)
    if config.preserve_flavour_yield:
        _preserve_yield(sf, fitted, mc, targets)
    return FitResult(
        sf=sf,
        fitted=fitted,
        grouping=grouping,
        chi2=chi2,
        n_iterations=iterations,
        converged=converged,
        normalisation={name: float(k) for name, k in zip(templates.regions, norm)},
        order=[templates.regions[r] for r, _ in targets],
    )


def build_grouping(
    data: Yields, mc: Yields, *, targets: list[tuple[int, int]], config: FitConfig, levels: list[tuple[int, ...]]
) -> Grouping:
    """Adaptive bin groups of each target flavour in its region, with the usable ones marked."""
    n_flavours = mc.value.shape[1]
    labels = np.full(mc.value.shape[1:], -1, dtype=int)
    usable: list[np.ndarray] = [np.zeros(0, dtype=bool) for _ in range(n_flavours)]
    for region, flavour in targets:
        signal = mc.value[region, flavour]
        variance = data.variance[region] + mc.variance[region].sum(axis=0)
        labels[flavour] = adaptive_groups(
            signal, variance, levels=levels, max_relative_uncertainty=config.max_relative_uncertainty
        )
        usable[flavour] = _usable_groups(labels[flavour], signal, variance, data.value[region], mc.value[region], config)
    return Grouping(labels=labels, usable=usable)


def global_chi2(
    data: Yields, mc: Yields, sf: np.ndarray, *, targets: list[tuple[int, int]], contamination_scale: float = 1.0
) -> float:
    """Chi2 of data against the SF-weighted MC summed over regions and bins with positive variance."""
    total = 0.0
    for region, flavour in targets:
        weights = np.full(sf.shape[0], contamination_scale)
        weights[flavour] = 1.0
        shaped = weights.reshape(-1, *([1] * (sf.ndim - 1))) * sf
        prediction = (mc.value[region] * shaped).sum(axis=0)
        variance = data.variance[region] + (mc.variance[region] * shaped**2).sum(axis=0)
        ok = variance > 0
        total += float((((data.value[region] - prediction) ** 2)[ok] / variance[ok]).sum())
    return total


def _normalise(data: Yields, mc: Yields) -> tuple[Yields, np.ndarray]:
    data_sum = data.value.reshape(data.value.shape[0], -1).sum(axis=1)
    mc_sum = mc.value.reshape(mc.value.shape[0], -1).sum(axis=1)
    norm = np.where((mc_sum > 0) & (data_sum > 0), data_sum / np.where(mc_sum > 0, mc_sum, 1.0), 1.0)
    return mc.scaled(norm.reshape(-1, *([1] * (mc.value.ndim - 1)))), norm


def _targets(
    regions: tuple[str, ...], data: Yields, mc: Yields, *, level: int = logging.WARNING
) -> list[tuple[int, int]]:
    """(region, flavour) index pairs of the populated regions, most pure first."""
    pairs = []
    for r, name in enumerate(regions):
        f = MC_FLAVOURS.index(REGION_TARGET[name])
        total = mc.value[r].sum()
        if total <= 0 or data.value[r].sum() <= 0:
            log.log(level, "region '%s' has no OS-SS events; the %s SF stays 1", name, REGION_TARGET[name])
            continue
        pairs.append((float(mc.value[r, f].sum() / total), r, f))
    return [(r, f) for _, r, f in sorted(pairs, reverse=True)]


def _usable_groups(labels, signal, variance, data, mc, config: FitConfig) -> np.ndarray:
    n = int(labels.max()) + 1
    s = group_sums(signal, labels, n)
    total = group_sums(mc.sum(axis=0), labels, n)
    d = group_sums(data, labels, n)
    rel = np.array([relative_uncertainty(signal[labels == g], variance[labels == g]) for g in range(n)])
    purity = np.divide(s, total, out=np.zeros(n), where=total > 0)
    return (s > 0) & (purity >= config.min_purity) & (d >= config.min_data_events) & (rel <= config.max_relative_uncertainty)


def _group_ratio(sf, region, flavour, data, mc, grouping, config) -> np.ndarray:
    labels = grouping.labels[flavour]
    n = len(grouping.usable[flavour])
    others = [g for g in range(sf.shape[0]) if g != flavour]
    contamination = config.contamination_scale * sum(mc.value[region, g] * sf[g] for g in others)
    numerator = group_sums(data.value[region] - contamination, labels, n)
    signal = group_sums(mc.value[region, flavour], labels, n)
    return np.divide(numerator, signal, out=np.zeros(n), where=signal > 0)


def _update(sf, region, flavour, data, mc, grouping, config: FitConfig) -> None:
    labels = grouping.labels[flavour]
    ratio = _group_ratio(sf, region, flavour, data, mc, grouping, config)
    counts = np.bincount(labels.ravel(), minlength=len(ratio))
    current = group_sums(sf[flavour], labels, len(ratio)) / np.maximum(counts, 1)
    new = current + config.learning_rate * (ratio - current)
    keep_one = ~grouping.usable[flavour] | (ratio <= 0)
    new[keep_one] = 1.0
    sf[flavour] = new[labels]


def _fitted_bins(sf, data, mc, grouping, targets, config, *, level: int) -> np.ndarray:
    fitted = np.zeros(sf.shape, dtype=bool)
    for region, flavour in targets:
        ratio = _group_ratio(sf, region, flavour, data, mc, grouping, config)
        good = grouping.usable[flavour] & (ratio > 0)
        if good.sum() == 1 and config.preserve_flavour_yield:
            # One group carries only the normalisation, which the yield preservation removes again.
            log.log(level, "the %s SF has a single usable bin group; it carries no shape and stays 1", MC_FLAVOURS[flavour])
            sf[flavour] = 1.0
            continue
        fitted[flavour] = good[grouping.labels[flavour]]
    return fitted


def _preserve_yield(sf, fitted, mc, targets) -> None:
    for region, flavour in targets:
        mask = fitted[flavour]
        before = mc.value[region, flavour][mask].sum()
        after = (mc.value[region, flavour] * sf[flavour])[mask].sum()
        if before > 0 and after > 0:
            sf[flavour][mask] *= before / after
