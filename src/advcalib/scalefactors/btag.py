"""b-tag shape scale factors in BvsAll, in bins of probe jet pt and |eta|, per flavour.

The heavy-flavour / light-flavour iterative fit: the b SF comes from the bottom region after
subtracting light and c jets with their current SFs, the light SF from the light region after
subtracting b and c jets, and the c SF from the charm region likewise; fit.fit_shape iterates
these updates to convergence on the ``BvsAll`` histogram's [pt, |eta|, BvsAll] grid.
"""

from __future__ import annotations

import numpy as np

from advcalib import histograms
from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.fit import FitResult, Grouping, fit_shape
from advcalib.scalefactors.templates import Templates, extract

#: Histogram the b-tag fit reads.
HISTOGRAM = "BvsAll"


def block_levels() -> list[tuple[int, int, int]]:
    """Nested bin blocks of the [pt, |eta|, BvsAll] grid, coarse to fine.

    Whole grid, then pairs of pt bins over all |eta| bins and the whole discriminant, then
    single (pt, |eta|) bins, then 4, 2 and 1 discriminant bins. Sparse high-pt bins thus
    share SFs across pt before the discriminant is split.
    """
    n_pt = len(histograms.PT_EDGES) - 1
    n_eta = len(histograms.ABSETA_EDGES) - 1
    n = histograms.DISCRIMINATOR_BINS
    return [(n_pt, n_eta, n), (2, n_eta, n), (1, 1, n), (1, 1, 4), (1, 1, 2), (1, 1, 1)]


def read_templates(result: dict, *, model: str, systematic: str, source: str = "hists") -> Templates:
    """OS/SS yields of the [pt, |eta|, BvsAll] grid per region and flavour."""
    return extract(result, name=HISTOGRAM, model=model, systematic=systematic, source=source)


def fit(templates: Templates, *, config: FitConfig, grouping: Grouping | None = None) -> FitResult:
    """Fit the b-tag shape SFs [flavour, pt, |eta|, BvsAll]."""
    return fit_shape(templates, config=config, levels=block_levels(), grouping=grouping)


def shape_coordinate(templates: Templates) -> np.ndarray:
    """Coordinate u in [0, 1] of each bin for the stats1/stats2 variations: the BvsAll bin centre."""
    edges = templates.edges[-1]
    centres = 0.5 * (edges[1:] + edges[:-1])
    return np.broadcast_to(centres, templates.grid_shape).copy()
