"""Working-point scale factors derived from the shape SFs of the same fit.

For flavour f and a working point with pass region P of the grid, the data efficiency is
the SF-weighted MC efficiency, so

    SF_WP = [sum_P MC_f SF_f / sum MC_f SF_f] / [sum_P MC_f / sum MC_f]

with MC_f the OS-SS yield of flavour f summed over the three regions. BvsAll points are
evaluated per (pt, |eta|) bin, c-tag points (CvsL and CvsB cuts together) inclusively. The
thresholds are the working points of advcalib.efficiency, moved to the nearest bin edge as
that module does. Each shape-SF variation gives the WP-SF variation of the same name. Where
the MC efficiency of a flavour is not positive, SF_WP = 1, and negative values are clipped
to 0.

A flavour with no fitted bin in a WP cell (a (pt, |eta|) bin for BvsAll, the whole map for
c-tag) keeps SF_WP = 1. Its shape SFs there are 1 +- the unfitted uncertainty. The flat
stat shift cancels in the efficiency ratio, and the stats1/stats2 tilts of a shape that was
never measured are arbitrary. So :func:`set_unfitted_uncertainty` sets its statistical
variations (stat, stats1, stats2) to central +- the unfitted uncertainty.

NOTE: for fitted flavours the stat variation shifts every bin up or down together, so it
partly cancels in the ratio too and underestimates the WP-SF statistical uncertainty.
Computing the WP SF from each pseudo-experiment's SFs and taking the spread would measure it.
"""

from __future__ import annotations

import numpy as np

from advcalib.efficiency import WORKING_POINTS, WorkingPoint, nearest_edge

#: Variations that come from the statistical uncertainty, by direction ("up_stat" -> +1).
STATISTICAL_VARIATIONS: dict[str, float] = {
    f"{direction}_{name}": sign
    for name in ("stat", "stats1", "stats2")
    for direction, sign in (("up", 1.0), ("down", -1.0))
}


def working_points(histogram: str) -> dict[str, WorkingPoint]:
    """Working points on ``histogram`` keyed by level ("L", "M", "T")."""
    return {point.name.rsplit("_", 1)[-1]: point for point in WORKING_POINTS if point.histogram == histogram}


def pass_mask(point: WorkingPoint, *, axis_names: tuple[str, ...], edges: tuple[np.ndarray, ...]) -> np.ndarray:
    """Boolean grid of the bins that pass every cut of ``point``, each cut at its nearest bin edge."""
    shape = tuple(len(e) - 1 for e in edges)
    mask = np.ones(shape, dtype=bool)
    for variable, threshold in point.cuts:
        if variable not in axis_names:
            raise ValueError(f"working point {point.name} cuts on {variable}, which is not an axis of {axis_names}")
        axis = axis_names.index(variable)
        first_passing = nearest_edge(edges[axis], threshold)
        passing = np.arange(shape[axis]) >= first_passing
        mask &= passing.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return mask


def wp_scale_factors(mc: np.ndarray, sf: np.ndarray, mask: np.ndarray, *, sum_axes: tuple[int, ...]) -> np.ndarray:
    """WP SF per flavour, summing the grid axes ``sum_axes`` (grid axis numbering, flavour axis excluded).

    ``mc`` and ``sf`` have shape [F, *grid]; the result has [F, *remaining grid axes].
    """
    axes = tuple(a + 1 for a in sum_axes)
    passed = mask[None] * mc
    eff_mc = _ratio(passed.sum(axis=axes), mc.sum(axis=axes))
    eff_data = _ratio((passed * sf).sum(axis=axes), (mc * sf).sum(axis=axes))
    sf_wp = np.where((eff_mc > 0) & np.isfinite(eff_data), _ratio(eff_data, eff_mc, fill=1.0), 1.0)
    # OS-SS yields can be negative in single bins, which could push a ratio below zero.
    return np.clip(sf_wp, 0.0, None)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    return np.divide(numerator, denominator, out=np.full_like(numerator, fill), where=np.asarray(denominator) > 0)


def unfitted_cells(fitted: np.ndarray, *, sum_axes: tuple[int, ...]) -> np.ndarray:
    """Boolean [F, *remaining grid axes]: True where a flavour has no fitted bin among the summed axes."""
    return ~np.asarray(fitted, dtype=bool).any(axis=tuple(a + 1 for a in sum_axes))


def set_unfitted_uncertainty(
    variations: dict[str, dict[str, np.ndarray]], unfitted: np.ndarray, *, uncertainty: float
) -> dict[str, dict[str, np.ndarray]]:
    """Copy WP SFs {systematic: {wp: [F, ...]}} with the statistical variations central +- ``uncertainty`` where ``unfitted``.

    Other variations (contam, MC systematics) keep their computed values. The shifted values
    are clipped at 0, like every SF variation. ``variations`` is not modified.
    """
    out = {systematic: dict(per_wp) for systematic, per_wp in variations.items()}
    for systematic, sign in STATISTICAL_VARIATIONS.items():
        if systematic not in out:
            continue
        for level, values in out[systematic].items():
            central = variations["central"][level]
            shifted = np.clip(central + sign * uncertainty, 0.0, None)
            out[systematic][level] = np.where(unfitted, shifted, values)
    return out
