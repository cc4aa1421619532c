"""Tagging efficiencies of data and MC at working points, and their ratio.

The efficiency of a working point is the OS-SS yield of probe jets that pass its cuts over
the OS-SS yield of all probe jets, per selection and model, summed over datasets and
channels. The histograms have 20 bins on [0, 1], so a cut can only sit on a bin edge. Each
threshold moves to the nearest edge (a tie goes to the lower edge), and the table reports
that effective threshold next to the nominal one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import hist
import numpy as np

from advcalib.histograms import SELECTIONS, discriminator_axis
from advcalib.outputs import DATA_FLAVOUR, MC_FLAVOURS, flavour_sum, models_of, region_histogram, summarise, write_csv_atomic

log = logging.getLogger(__name__)

UL2018_DEEPJET = "CMS BTV recommendation for DeepJet, 2018 UL (106X)"


@dataclass(frozen=True)
class WorkingPoint:
    """A working point: a jet passes when every discriminator is at or above its threshold."""

    name: str
    histogram: str
    cuts: tuple[tuple[str, float], ...]
    source: str

    def describe(self, cuts: Sequence[tuple[str, float]] | None = None) -> str:
        """Cuts as text, e.g. ``CvsL>=0.099 & CvsB>=0.325``."""
        return " & ".join(f"{axis}>={threshold:.4g}" for axis, threshold in (cuts or self.cuts))


def _levels(prefix: str, histogram: str, thresholds: Sequence[Sequence[tuple[str, float]]], source: str) -> list[WorkingPoint]:
    return [
        WorkingPoint(f"{prefix}_{level}", histogram, tuple(cuts), source)
        for level, cuts in zip(("L", "M", "T"), thresholds)
    ]


_BVSALL = (0.0490, 0.2783, 0.7100)
_CTAG = ((0.038, 0.246), (0.099, 0.325), (0.282, 0.267))

#: The working points of the efficiency table. BvsAll and c-tag (CvsL and CvsB together)
#: are the official 2018 UL DeepJet points. L, M and T give 10 %, 1 % and 0.1 % light-jet
#: misidentification in simulation. BvsL, CvsL and CvsB alone have no official points, so
#: these reuse the BvsAll thresholds and the two parts of the c-tag pairs. Because
#: BvsL >= BvsAll for every jet, the BvsL points are looser than the BvsAll ones. CvsB
#: gets only L and M, because the CvsB part of the c-tag T pair (0.267) is below that of M.
WORKING_POINTS: tuple[WorkingPoint, ...] = (
    *_levels("BvsAll", "BvsAll", [[("BvsAll", t)] for t in _BVSALL], UL2018_DEEPJET),
    *_levels("ctag", "CvsL_CvsB", [[("CvsL", cvsl), ("CvsB", cvsb)] for cvsl, cvsb in _CTAG], UL2018_DEEPJET),
    *_levels("BvsL", "BvsL", [[("BvsL", t)] for t in _BVSALL], "BvsAll thresholds applied to BvsL"),
    *_levels("CvsL", "CvsL", [[("CvsL", cvsl)] for cvsl, _ in _CTAG], "CvsL part of the c-tag pairs"),
    *_levels("CvsB", "CvsB", [[("CvsB", cvsb)] for _, cvsb in _CTAG[:2]], "CvsB part of the c-tag pairs"),
)


@dataclass(frozen=True)
class EfficiencyRow:
    """One row of ``efficiency.csv``: one working point in one selection for one model."""

    selection: str
    model: str
    working_point: str
    histogram: str
    threshold: str
    effective_threshold: str
    data_eff: float
    data_unc: float
    mc_eff: float
    mc_unc: float
    ratio: float
    ratio_unc: float
    mc_eff_b: float
    mc_eff_c: float
    mc_eff_light: float
    source: str


def nearest_edge(edges: np.ndarray, threshold: float) -> int:
    """Return the index of the bin edge nearest to ``threshold``, the lower edge on a tie."""
    distance = np.abs(np.asarray(edges, dtype=float) - threshold)
    # Floating-point error can make 0.325 look nearer to 0.35 than to 0.30 by 1e-17.
    return int(np.flatnonzero(distance <= distance.min() + 1e-9)[0])


def effective_cuts(point: WorkingPoint) -> tuple[tuple[str, float], ...]:
    """Return the cuts of a working point moved to the nearest discriminator bin edges."""
    cuts = []
    for axis, threshold in point.cuts:
        edges = discriminator_axis(axis).edges
        cuts.append((axis, float(edges[nearest_edge(edges, threshold)])))
    return tuple(cuts)


def efficiency(passed: float, passed_variance: float, failed: float, failed_variance: float) -> tuple[float, float]:
    """Return the efficiency P/(P+F) and its statistical uncertainty from weighted yields.

    Pass and fail yields are independent samples, so the first-order propagation gives
    Var = (F^2 Var(P) + P^2 Var(F)) / (P+F)^4. This also holds for OS-SS yields, whose
    variances are the sums of the OS and SS variances. NaN when P+F <= 0, and when P or F
    is negative, which OS-SS subtraction can give: P/(P+F) is then no fraction (it can be
    below 0 or above 1) and the efficiency is undefined.
    """
    total = passed + failed
    if not total > 0 or passed < 0 or failed < 0:
        return math.nan, math.nan
    variance = (failed**2 * passed_variance + passed**2 * failed_variance) / total**4
    return passed / total, math.sqrt(variance)


def ratio(numerator: float, numerator_unc: float, denominator: float, denominator_unc: float) -> tuple[float, float]:
    """Return numerator/denominator with uncorrelated relative uncertainties added in quadrature."""
    if not denominator > 0 or math.isnan(numerator):
        return math.nan, math.nan
    value = numerator / denominator
    if numerator == 0:
        return value, numerator_unc / denominator
    return value, abs(value) * math.hypot(numerator_unc / numerator, denominator_unc / denominator)


def efficiency_table(result: Mapping[str, Any], *, systematic: str = "nominal") -> list[EfficiencyRow]:
    """Compute the data and MC efficiency of every working point, selection and model.

    Data is the ``data`` flavour. MC is the sum of b, c and light, scaled as the run
    stored it. The per-flavour MC efficiencies are included too. Jets with an undefined
    discriminator (underflow, value -1) count as failing, and a discriminator of exactly
    1 (overflow) as passing. A selection or model that the run lacks gives NaN, and one
    warning lists those cells. An OS-SS pass or fail yield below zero also gives NaN (see
    :func:`efficiency`), and the data/MC ratio is NaN when either side is. One more warning
    lists those cells with the affected column.
    """
    rows: list[EfficiencyRow] = []
    empty: list[str] = []
    negative: list[str] = []
    for model in models_of(result):
        for selection in SELECTIONS:
            for point in WORKING_POINTS:
                cell = f"{model}/{selection}/{point.name}"
                row, negative_parts = _row(result, point, selection=selection, model=model, systematic=systematic)
                missing = [c for c in ("data_eff", "mc_eff") if math.isnan(getattr(row, c)) and c not in negative_parts]
                if missing:
                    empty.append(cell)
                negative += [f"{cell} ({part})" for part in negative_parts]
                rows.append(row)
    if empty:
        log.warning("efficiency is NaN for %d cells without data or MC: %s", len(empty), summarise(empty))
    if negative:
        log.warning("efficiency is NaN for %d entries whose OS-SS pass or fail yield is negative: %s",
                    len(negative), summarise(negative))
    return rows


def _row(
    result: Mapping[str, Any], point: WorkingPoint, *, selection: str, model: str, systematic: str
) -> tuple[EfficiencyRow, list[str]]:
    """Build one row, and list its columns (``data_eff``, ``mc_eff``, ``mc_eff_b``, ...) that are NaN because a yield is negative."""
    histogram = region_histogram(result, point.histogram, selection=selection, model=model, systematic=systematic)
    effective = effective_cuts(point)
    yields: dict[str, tuple[float, float, float, float]] = {}
    if histogram is not None:
        for name, flavours in {"data": [DATA_FLAVOUR], "mc": MC_FLAVOURS, **{f: [f] for f in MC_FLAVOURS}}.items():
            yields[name] = _pass_fail(histogram, flavours, effective)
    nan4 = (math.nan, 0.0, math.nan, 0.0)
    data_eff, data_unc = efficiency(*yields.get("data", nan4))
    mc_eff, mc_unc = efficiency(*yields.get("mc", nan4))
    ratio_value, ratio_unc = ratio(data_eff, data_unc, mc_eff, mc_unc)
    flavour_eff = {flavour: efficiency(*yields.get(flavour, nan4))[0] for flavour in MC_FLAVOURS}
    columns = {"data": "data_eff", "mc": "mc_eff", **{flavour: f"mc_eff_{flavour}" for flavour in MC_FLAVOURS}}
    negative = [columns[name] for name, (passed, _, failed, _) in yields.items() if passed < 0 or failed < 0]
    row = EfficiencyRow(
        selection=selection, model=model, working_point=point.name, histogram=point.histogram,
        threshold=point.describe(), effective_threshold=point.describe(effective),
        data_eff=data_eff, data_unc=data_unc, mc_eff=mc_eff, mc_unc=mc_unc, ratio=ratio_value, ratio_unc=ratio_unc,
        mc_eff_b=flavour_eff["b"], mc_eff_c=flavour_eff["c"], mc_eff_light=flavour_eff["light"], source=point.source,
    )
    return row, negative


def _pass_fail(histogram: hist.Hist, flavours: Sequence[str], cuts: Sequence[tuple[str, float]]) -> tuple[float, float, float, float]:
    """Return (pass, pass variance, fail, fail variance), summing every axis other than the cut ones."""
    values, variances = flavour_sum(histogram, flavours)
    names = [name for name in histogram.axes.name if name != "flavour"]
    passing = [slice(None)] * len(names)
    for axis, threshold in cuts:
        position = names.index(axis)
        # The arrays include flow bins, so +1 skips the underflow bin.
        passing[position] = slice(nearest_edge(histogram.axes[axis].edges, threshold) + 1, None)
    in_pass = np.zeros(values.shape, dtype=bool)
    in_pass[tuple(passing)] = True
    # Summing the failing bins directly, not total minus passing, keeps the fail variance
    # non-negative: the difference of two large sums can round below zero.
    passed, passed_variance = values[in_pass].sum(), variances[in_pass].sum()
    failed, failed_variance = values[~in_pass].sum(), variances[~in_pass].sum()
    return passed, passed_variance, failed, failed_variance


def write_efficiency(rows: Sequence[EfficiencyRow], out_dir: str | Path) -> Path:
    """Write ``efficiency.csv`` in ``out_dir``, one row per EfficiencyRow, NaN as ``nan``."""
    header = [field.name for field in fields(EfficiencyRow)]
    return write_csv_atomic(Path(out_dir) / "efficiency.csv", header, [astuple(row) for row in rows])
