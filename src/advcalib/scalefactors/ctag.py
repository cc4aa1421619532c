"""c-tag shape scale factors in the CvsL x CvsB plane, per flavour.

The fit (fit.fit_shape) runs on the OS-SS ``CvsL_CvsB`` histograms of the light, charm and
bottom regions together: light region -> light SF, charm -> c SF, bottom -> b SF.
"""

from __future__ import annotations

import numpy as np

from advcalib import histograms
from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.fit import FitResult, Grouping, fit_shape
from advcalib.scalefactors.templates import Templates, extract

#: Histogram the c-tag fit reads.
HISTOGRAM = "CvsL_CvsB"


def block_levels() -> list[tuple[int, int]]:
    """Nested bin blocks of the 20 x 20 map, coarse to fine: whole map, 4 x 4, 2 x 2, single bins."""
    n = histograms.DISCRIMINATOR_BINS
    return [(n, n), (4, 4), (2, 2), (1, 1)]


def read_templates(result: dict, *, model: str, systematic: str, source: str = "hists") -> Templates:
    """OS/SS yields of the CvsL x CvsB map per region and flavour."""
    return extract(result, name=HISTOGRAM, model=model, systematic=systematic, source=source)


def fit(templates: Templates, *, config: FitConfig, grouping: Grouping | None = None) -> FitResult:
    """Fit the c-tag shape SFs [flavour, CvsL, CvsB]."""
    return fit_shape(templates, config=config, levels=block_levels(), grouping=grouping)


def shape_coordinate(templates: Templates) -> np.ndarray:
    """Coordinate u in [0, 1] of each bin for the stats1/stats2 variations: (CvsL + CvsB) / 2 at the bin centre."""
    cvl, cvb = (0.5 * (edges[1:] + edges[:-1]) for edges in templates.edges)
    return 0.5 * (cvl[:, None] + cvb[None, :])
