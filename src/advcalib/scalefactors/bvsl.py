"""BvsL shape scale factors per flavour, inclusive in pt and |eta|.

The same iterative fit as the b-tag shape (fit.fit_shape) on the one-dimensional ``BvsL``
histogram: b SF from the bottom region, c SF from the charm region, light SF from the light
region, each after subtracting the other flavours with their current SFs.
"""

from __future__ import annotations

import numpy as np

from advcalib import histograms
from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.fit import FitResult, Grouping, fit_shape
from advcalib.scalefactors.templates import Templates, extract

#: Histogram the BvsL fit reads.
HISTOGRAM = "BvsL"


def block_levels() -> list[tuple[int]]:
    """Nested bin blocks of the 20 BvsL bins, coarse to fine: all bins, then 4, 2 and 1."""
    n = histograms.DISCRIMINATOR_BINS
    return [(n,), (4,), (2,), (1,)]


def read_templates(result: dict, *, model: str, systematic: str, source: str = "hists") -> Templates:
    """OS/SS yields of the BvsL bins per region and flavour."""
    return extract(result, name=HISTOGRAM, model=model, systematic=systematic, source=source)


def fit(templates: Templates, *, config: FitConfig, grouping: Grouping | None = None) -> FitResult:
    """Fit the BvsL shape SFs [flavour, BvsL]."""
    return fit_shape(templates, config=config, levels=block_levels(), grouping=grouping)


def shape_coordinate(templates: Templates) -> np.ndarray:
    """Coordinate u in [0, 1] of each bin for the stats1/stats2 variations: the BvsL bin centre."""
    edges = templates.edges[0]
    return 0.5 * (edges[1:] + edges[:-1])
