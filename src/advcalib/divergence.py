"""Jensen-Shannon divergence (JSD) between the data and MC discriminator shapes.

JSD(P||Q) = 1/2 KL(P||M) + 1/2 KL(Q||M) with M = (P + Q)/2 and the Kullback-Leibler
divergence KL in natural log, so 0 <= JSD <= ln 2. P is the OS-SS histogram of collision
data and Q the sum of the simulated flavours, both normalised to unit sum, in the 20
discriminator bins of one selection and one model.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.special import rel_entr

from advcalib.histograms import DISCRIMINATORS, SELECTIONS
from advcalib.outputs import (
    DATA_FLAVOUR,
    mc_total,
    models_of,
    region_shapes,
    summarise,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

#: {model: {selection: {discriminator: {"jsd": value, "unc": bootstrap standard deviation}}}}
JsdTable = dict[str, dict[str, dict[str, dict[str, float]]]]

DEFAULT_TOYS = 500


def jsd(p: np.ndarray, q: np.ndarray) -> float | np.ndarray:
    """Compute the Jensen-Shannon divergence of two histograms, in nats.

    Both inputs are normalised to unit sum first. Bins where either input is negative (an
    OS-SS subtraction can give those) are dropped from both before normalising. Bins empty
    on both sides add nothing. The result lies in [0, ln 2]: 0 for equal shapes, ln 2 for
    shapes without common bins. It equals the square of
    ``scipy.spatial.distance.jensenshannon(p, q)`` for non-negative inputs.

    Arguments:
        p, q: bin contents of equal shape; a leading batch axis gives one JSD per row.

    Returns:
        The JSD (a float, or an array for batched input). NaN where either side sums to
        zero or less after the negative bins are dropped.

    Raises:
        ValueError: shapes differ or an input contains NaN or infinity.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"jsd needs histograms of equal shape, got {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("jsd inputs contain NaN or infinity. Check the histogram contents.")

    keep = (p >= 0) & (q >= 0)
    p = np.where(keep, p, 0.0)
    q = np.where(keep, q, 0.0)
    p_sum = p.sum(axis=-1, keepdims=True)
    q_sum = q.sum(axis=-1, keepdims=True)
    valid = (p_sum > 0) & (q_sum > 0)
    p = np.divide(p, p_sum, out=np.zeros_like(p), where=valid)
    q = np.divide(q, q_sum, out=np.zeros_like(q), where=valid)

    m = 0.5 * (p + q)
    divergence = 0.5 * (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1))
    # Rounding can push identical or disjoint shapes a few ulp outside [0, ln 2].
    divergence = np.clip(divergence, 0.0, math.log(2.0))
    divergence = np.where(valid[..., 0], divergence, np.nan)
    return float(divergence) if divergence.ndim == 0 else divergence


def jsd_with_uncertainty(
    p: np.ndarray,
    q: np.ndarray,
    *,
    p_variance: np.ndarray,
    q_variance: np.ndarray,
    toys: int = DEFAULT_TOYS,
    seed: int | Sequence[int] | np.random.Generator = 0,
    method: Literal["gaussian", "poisson"] = "gaussian",
) -> tuple[float, float]:
    """Compute the JSD and its statistical uncertainty from bootstrap toys.

    Each toy redraws every bin of both histograms independently from its content and
    variance, and the uncertainty is the standard deviation of the toy JSDs. The JSD itself
    comes from the unvaried histograms. ``gaussian`` draws content + sqrt(variance) * N(0, 1),
    which also suits the negative contents of OS-SS bins. ``poisson`` draws a scaled Poisson
    number, variance/content * Poisson(content**2/variance), which keeps the mean and
    variance of weighted bins and is exact for unit weights. It falls back to the Gaussian
    draw in bins with content or variance <= 0. The uncertainty describes the spread of the
    estimate, not its bias: a finite sample gives a JSD above zero even for equal shapes.

    Returns:
        (jsd, uncertainty). The uncertainty is NaN when the JSD is NaN, and also when fewer
        than two toys give a finite JSD.
    """
    if toys < 2:
        raise ValueError(f"toys={toys} is too few for a standard deviation. Use 2 or more, and 100 or more for a stable value.")
    if method not in ("gaussian", "poisson"):
        raise ValueError(f"unknown resampling method {method!r}; use 'gaussian' or 'poisson'")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    central = jsd(p, q)
    if math.isnan(central):
        return central, math.nan

    p_toys = _resample(np.asarray(p, dtype=float), np.asarray(p_variance, dtype=float), toys, rng, method)
    q_toys = _resample(np.asarray(q, dtype=float), np.asarray(q_variance, dtype=float), toys, rng, method)
    toy_values = jsd(p_toys, q_toys)
    toy_values = toy_values[np.isfinite(toy_values)]
    if toy_values.size < 2:
        return central, math.nan
    return central, float(np.std(toy_values, ddof=1))


def _resample(values: np.ndarray, variances: np.ndarray, toys: int, rng: np.random.Generator, method: str) -> np.ndarray:
    if np.any(variances < 0) or not np.all(np.isfinite(variances)):
        raise ValueError("bin variances must be finite and non-negative")
    sigma = np.sqrt(variances)
    draws = values + sigma * rng.standard_normal((toys, values.size))
    if method == "poisson":
        weighted = (values > 0) & (variances > 0)
        scale = np.divide(variances, values, out=np.ones_like(values), where=weighted)
        expected = np.divide(values**2, variances, out=np.zeros_like(values), where=weighted)
        counts = rng.poisson(expected, size=(toys, values.size))
        draws = np.where(weighted, scale * counts, draws)
    return draws


def jsd_table(
    result: Mapping[str, Any],
    *,
    toys: int = DEFAULT_TOYS,
    seed: int = 0,
    systematic: str = "nominal",
    method: Literal["gaussian", "poisson"] = "gaussian",
) -> JsdTable:
    """Compute the data/MC JSD of every model, selection and discriminator of a run.

    Each cell draws its toys from its own generator, seeded by ``seed`` and a checksum of
    the cell name, so one cell's value does not depend on which other cells exist. A cell
    without data or MC (region not filled, or nothing left after dropping negative bins)
    gets NaN, and one warning lists all such cells.
    """
    table: JsdTable = {}
    empty: list[str] = []
    for model in models_of(result):
        table[model] = {}
        for selection in SELECTIONS:
            table[model][selection] = {}
            for discriminator in DISCRIMINATORS:
                cell = f"{model}/{selection}/{discriminator}"
                shapes = region_shapes(result, discriminator, selection=selection, model=model, systematic=systematic)
                value, uncertainty = math.nan, math.nan
                if shapes is not None:
                    mc_values, mc_variances = mc_total(shapes)
                    data_values, data_variances = shapes[DATA_FLAVOUR]
                    value, uncertainty = jsd_with_uncertainty(
                        data_values, mc_values, p_variance=data_variances, q_variance=mc_variances,
                        toys=toys, seed=[seed, zlib.crc32(cell.encode())], method=method,
                    )
                if math.isnan(value):
                    empty.append(cell)
                table[model][selection][discriminator] = {"jsd": value, "unc": uncertainty}
    if empty:
        log.warning("JSD is NaN for %d cells without data or MC after OS-SS subtraction: %s", len(empty), summarise(empty))
    return table


def table_columns() -> list[tuple[str, str]]:
    """List the (selection, discriminator) columns of the JSD table in their fixed order."""
    return [(selection, discriminator) for selection in SELECTIONS for discriminator in DISCRIMINATORS]


def write_jsd_table(table: JsdTable, out_dir: str | Path) -> list[Path]:
    """Write the JSD table as ``jsd.csv``, ``jsd.json`` and ``jsd.md`` in ``out_dir``.

    ``jsd.csv`` has a ``model`` column, then ``<selection>_<discriminator>`` and
    ``<selection>_<discriminator>_unc`` for each of the nine cells, with ``nan`` for
    missing values. ``jsd.json`` repeats the nested table with null for NaN. ``jsd.md``
    is a Markdown table with ``value ± uncertainty`` in each of the nine cells.
    Existing files are overwritten.
    """
    out_dir = Path(out_dir)
    columns = table_columns()
    header = ["model"]
    for selection, discriminator in columns:
        header += [f"{selection}_{discriminator}", f"{selection}_{discriminator}_unc"]
    rows = []
    for model, cells in table.items():
        row: list[Any] = [model]
        for selection, discriminator in columns:
            entry = _cell(cells, selection, discriminator)
            row += [entry["jsd"], entry["unc"]]
        rows.append(row)
    return [
        write_csv_atomic(out_dir / "jsd.csv", header, rows),
        write_json_atomic(out_dir / "jsd.json", table),
        write_text_atomic(out_dir / "jsd.md", format_markdown(table)),
    ]


def format_markdown(table: JsdTable) -> str:
    """Format the JSD table as Markdown: one row per model, nine ``value ± unc`` columns."""
    columns = table_columns()
    lines = [
        "| model | " + " | ".join(f"{selection} {discriminator}" for selection, discriminator in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for model, cells in table.items():
        entries = [format_jsd(_cell(cells, selection, discriminator)) for selection, discriminator in columns]
        lines.append(f"| {model} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def read_jsd_json(path: str | Path) -> JsdTable:
    """Read a ``jsd.json`` written by :func:`write_jsd_table`, with null read back as NaN."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        return {
            model: {
                selection: {
                    discriminator: {key: math.nan if entry.get(key) is None else float(entry[key]) for key in ("jsd", "unc")}
                    for discriminator, entry in cells.items()
                }
                for selection, cells in selections.items()
            }
            for model, selections in data.items()
        }
    except (AttributeError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a JSD table ({{model: {{selection: {{discriminator: {{jsd, unc}}}}}}}}): {error}") from error


def _cell(cells: Mapping[str, Mapping[str, Mapping[str, float]]], selection: str, discriminator: str) -> Mapping[str, float]:
    return cells.get(selection, {}).get(discriminator, {"jsd": math.nan, "unc": math.nan})


def format_jsd(entry: Mapping[str, float]) -> str:
    """Format one JSD cell as ``value ± unc`` (three and two significant digits), ``n/a`` for NaN."""
    value, uncertainty = entry.get("jsd", math.nan), entry.get("unc", math.nan)
    if value is None or math.isnan(value):
        return "n/a"
    if uncertainty is None or math.isnan(uncertainty):
        return f"{value:.3g}"
    return f"{value:.3g} ± {uncertainty:.2g}"
