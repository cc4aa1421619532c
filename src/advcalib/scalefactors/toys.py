"""Statistical uncertainty of the shape SFs from pseudo-experiments.

Each pseudo-experiment varies the OS and the SS yields of data and of every MC flavour bin
by bin with a scaled Poisson distribution. A bin with content v and variance s2 has
n = v^2 / s2 effective entries of weight s2 / v, and the toy content is Poisson(n) * s2 / v.
For data with unit weights this is Poisson(v). The fit is repeated with the nominal bin
groups, and the per-bin standard deviation of the fitted SFs is the statistical uncertainty.
Bins with v <= 0 or s2 <= 0 are not varied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from advcalib.scalefactors.fit import FitResult, Grouping
from advcalib.scalefactors.templates import Templates, Yields

log = logging.getLogger(__name__)

FitFunction = Callable[..., FitResult]


def vary_yields(yields: Yields, rng: np.random.Generator) -> Yields:
    """Draw one scaled-Poisson variation of ``yields``, keeping the variances."""
    value, variance = yields.value, yields.variance
    ok = (value > 0) & (variance > 0)
    weight = np.divide(variance, value, out=np.ones_like(value), where=ok)
    n_eff = np.divide(value, weight, out=np.zeros_like(value), where=ok)
    toy = np.where(ok, rng.poisson(n_eff) * weight, value)
    return Yields(toy, variance.copy())


def vary_templates(templates: Templates, rng: np.random.Generator) -> Templates:
    """Pseudo-experiment of the OS and SS data and MC yields."""
    return Templates(
        regions=templates.regions,
        data_os=vary_yields(templates.data_os, rng),
        data_ss=vary_yields(templates.data_ss, rng),
        mc_os=vary_yields(templates.mc_os, rng),
        mc_ss=vary_yields(templates.mc_ss, rng),
        edges=templates.edges,
        axis_names=templates.axis_names,
    )


def toy_scale_factors(
    templates: Templates, *, fit: FitFunction, grouping: Grouping, n_toys: int, seed: int
) -> np.ndarray:
    """Fitted SFs of ``n_toys`` pseudo-experiments, shape [n_toys, F, *grid]."""
    if n_toys < 2:
        raise ValueError(f"n_toys must be at least 2 to estimate a spread, got {n_toys}")
    rng = np.random.default_rng(seed)
    results = [fit(vary_templates(templates, rng), grouping=grouping) for _ in range(n_toys)]
    not_converged = sum(not result.converged for result in results)
    if not_converged:
        # The refits log at debug level only, so the count is reported here once.
        log.warning("%d of %d pseudo-experiments did not converge; their SFs of the best chi2 are used",
                    not_converged, n_toys)
    log.debug("ran %d pseudo-experiments", n_toys)
    return np.stack([result.sf for result in results])


def statistical_uncertainty(toy_sfs: np.ndarray) -> np.ndarray:
    """Per-bin standard deviation of the pseudo-experiments' SFs (ddof = 1)."""
    return np.std(toy_sfs, axis=0, ddof=1)
