"""Data/MC plots of the discriminators: MC stacked by flavour, data points, ratio panel.

Every figure is drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, in the CMS
style of mplhep applied through a style context. So plotting neither switches the pyplot
backend nor changes the caller's rcParams. All histograms are OS-SS subtracted, so a bin
can be negative, and it is drawn as it is.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.style
import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from advcalib.divergence import JsdTable, format_jsd, jsd_table as compute_jsd_table
from advcalib.histograms import DISCRIMINATOR_BINS, DISCRIMINATORS, SELECTIONS
from advcalib.outputs import DATA_FLAVOUR, MC_FLAVOURS, mc_total, models_of, region_shapes, summarise

log = logging.getLogger(__name__)

FLAVOUR_COLOURS: dict[str, str] = {"b": "#e42536", "c": "#f89c20", "light": "#5790fc"}
FLAVOUR_LABELS: dict[str, str] = {"b": "b jets", "c": "c jets", "light": "light jets"}
EDGES = np.linspace(0.0, 1.0, DISCRIMINATOR_BINS + 1)

Shapes = Mapping[str, tuple[np.ndarray, np.ndarray]]


def draw_comparison(ax: Axes, ratio_ax: Axes, shapes: Shapes, *, discriminator: str, title: str, jsd_text: str) -> None:
    """Draw stacked MC, its statistical band and data on ``ax``, and data/MC on ``ratio_ax``."""
    mc_values, mc_variances = mc_total(shapes)
    data_values, data_variances = shapes[DATA_FLAVOUR]
    mc_error = np.sqrt(mc_variances)

    mplhep.histplot(
        [shapes[flavour][0] for flavour in MC_FLAVOURS], EDGES, stack=True, histtype="fill", ax=ax,
        color=[FLAVOUR_COLOURS[flavour] for flavour in MC_FLAVOURS],
        label=[FLAVOUR_LABELS[flavour] for flavour in MC_FLAVOURS],
    )
    ax.stairs(mc_values + mc_error, EDGES, baseline=mc_values - mc_error, fill=True, hatch="////",
              facecolor="none", edgecolor="0.3", linewidth=0, label="MC stat. unc.")
    mplhep.histplot(data_values, EDGES, yerr=np.sqrt(data_variances), histtype="errorbar", color="black", label="Data", ax=ax)
    ax.plot([], [], " ", label=f"JSD = {jsd_text}")
    ax.set_ylabel("OS-SS jets / bin")
    ax.set_xlim(0.0, 1.0)
    # Leave the upper 40 % of the panel free for the label and the legend.
    highest = max(np.max(mc_values + mc_error), np.max(data_values + np.sqrt(data_variances)), 0.0)
    if highest > 0:
        ax.set_ylim(top=highest / 0.6)
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index("Data")] + [index for index, label in enumerate(labels) if label != "Data"]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper right", ncols=2,
              fontsize="small", title=title, title_fontsize="small")
    ax.tick_params(labelbottom=False)

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mc_values > 0, data_values / mc_values, np.nan)
        ratio_error = np.where(mc_values > 0, np.sqrt(data_variances) / mc_values, np.nan)
        band = np.where(mc_values > 0, mc_error / mc_values, np.nan)
    ratio_ax.stairs(1 + band, EDGES, baseline=1 - band, fill=True, hatch="////", facecolor="none", edgecolor="0.3", linewidth=0)
    ratio_ax.errorbar(0.5 * (EDGES[1:] + EDGES[:-1]), ratio, yerr=ratio_error, fmt="o", color="black", markersize=4)
    ratio_ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1)
    ratio_ax.set_ylim(0.5, 1.5)
    ratio_ax.set_xlabel(discriminator)
    ratio_ax.set_ylabel("Data / MC")


def _new_figure(columns: int) -> tuple[Figure, list[tuple[Axes, Axes]]]:
    figure = Figure(figsize=(10 * columns, 10))
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, columns, height_ratios=(3, 1), hspace=0.05, wspace=0.25)
    panels = []
    for column in range(columns):
        ax = figure.add_subplot(grid[0, column])
        panels.append((ax, figure.add_subplot(grid[1, column], sharex=ax)))
    return figure, panels


def _label(ax: Axes, lumi: float | None, text: str) -> None:
    lumi_fb = None if lumi is None else f"{lumi / 1000.0:.3g}"
    mplhep.cms.label(text=text, data=True, lumi=lumi_fb, com=13, ax=ax)


def _save(figure: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in formats:
        path = stem.with_suffix(f".{extension}")
        figure.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def _file_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", part) for part in parts)


def plot_all(
    result: Mapping[str, Any],
    out_dir: str | Path,
    jsd_table: JsdTable | None = None,
    *,
    selections: Sequence[str] = SELECTIONS,
    discriminators: Sequence[str] = DISCRIMINATORS,
    models: Sequence[str] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    text: str = "Private work",
) -> list[Path]:
    """Draw every data/MC comparison of a run into ``out_dir/plots`` and return the files written.

    One figure per selection, discriminator and model (``<selection>_<discriminator>_<model>``),
    and one per selection and discriminator with all models side by side
    (``<selection>_<discriminator>_models``), each in every format of ``formats``. A region
    with neither data nor MC entries is skipped with a warning. The legend shows the JSD from
    ``jsd_table``, which is computed with its default toys when not given. ``text`` follows
    the CMS label. Existing files are overwritten.
    """
    plots_dir = Path(out_dir) / "plots"
    models = list(models) if models is not None else models_of(result)
    if jsd_table is None:
        jsd_table = compute_jsd_table(result)
    lumi = result.get("lumi")
    written: list[Path] = []
    skipped: list[str] = []
    with matplotlib.style.context(mplhep.style.CMS):
        for selection in selections:
            for discriminator in discriminators:
                panels = []
                for model in models:
                    shapes = region_shapes(result, discriminator, selection=selection, model=model)
                    if shapes is None or not _has_events(shapes):
                        skipped.append(f"{model}/{selection}/{discriminator}")
                        continue
                    cell = jsd_table.get(model, {}).get(selection, {}).get(discriminator, {"jsd": math.nan, "unc": math.nan})
                    panels.append((model, shapes, format_jsd(cell)))
                for model, shapes, jsd_text in panels:
                    written += _plot_panels([(model, shapes, jsd_text)], selection, discriminator, lumi, text,
                                            plots_dir / _file_name(selection, discriminator, model), formats)
                if len(panels) > 1:
                    written += _plot_panels(panels, selection, discriminator, lumi, text,
                                            plots_dir / _file_name(selection, discriminator, "models"), formats)
    if skipped:
        log.warning("no plot for %d regions without data or MC: %s", len(skipped), summarise(skipped))
    return written


def _has_events(shapes: Shapes) -> bool:
    mc_values, _ = mc_total(shapes)
    return bool(np.any(shapes[DATA_FLAVOUR][0] != 0) or np.any(mc_values != 0))


def _plot_panels(
    panels: Sequence[tuple[str, Shapes, str]],
    selection: str,
    discriminator: str,
    lumi: float | None,
    text: str,
    stem: Path,
    formats: Sequence[str],
) -> list[Path]:
    figure, axes = _new_figure(len(panels))
    for (model, shapes, jsd_text), (ax, ratio_ax) in zip(panels, axes):
        draw_comparison(ax, ratio_ax, shapes, discriminator=discriminator,
                        title=f"{selection} selection, {model}", jsd_text=jsd_text)
        _label(ax, lumi, text)
    return _save(figure, stem, formats)
