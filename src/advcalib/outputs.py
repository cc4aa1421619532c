"""Read the histograms of a saved run for the output steps, and write their tables atomically.

The divergence, efficiency and plotting steps all compare the same thing: the OS-SS
subtracted histogram of one selection and one model, summed over datasets and channels,
split into collision data (flavour ``data``) and simulation (flavours ``b``, ``c``,
``light``). :func:`region_histogram` and :func:`region_shapes` build it once, so the three
steps agree.

The table writers build the text in memory and write it with :mod:`advcalib.atomic`
(temporary file in the target folder, then a rename), so a reader never sees a half-written
table and the file gets the mode a plain ``open`` gives. They overwrite an existing file: a
caller that must keep old outputs checks for them first.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

# The divergence step imports write_text_atomic from here, so this import is also a re-export.
from advcalib.atomic import write_text_atomic
from advcalib.histograms import FLAVOURS, HADRON_FLAVOUR, subtract_os_ss

log = logging.getLogger(__name__)

#: Simulated flavour categories, stacked in plots and summed into "MC".
MC_FLAVOURS: tuple[str, ...] = tuple(HADRON_FLAVOUR)
#: Flavour category of collision data and pseudo-data.
DATA_FLAVOUR: str = next(flavour for flavour in FLAVOURS if flavour not in HADRON_FLAVOUR)


def load_result(path: str | Path) -> dict[str, Any]:
    """Load the output of a run saved with ``coffea.util.save`` and check its layout.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not contain a dict with a ``hists`` dict of histograms.
    """
    from coffea.util import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run output {path} not found. Pass the hists.coffea written by 'advcalib run'.")
    result = load(path)
    if not isinstance(result, Mapping) or not isinstance(result.get("hists"), Mapping):
        kind = type(result).__name__
        raise ValueError(f"{path} contains a {kind} without a 'hists' dict, so it is not the output of 'advcalib run'")
    return dict(result)


def models_of(result: Mapping[str, Any]) -> list[str]:
    """List the models of a run: those in ``result["models"]``, then any other model category filled."""
    models = list(result.get("models") or {})
    for histogram in result["hists"].values():
        if "model" in histogram.axes.name:
            models.extend(name for name in histogram.axes["model"] if name not in models)
    return models


def region_histogram(
    result: Mapping[str, Any], name: str, *, selection: str, model: str, systematic: str = "nominal"
) -> hist.Hist | None:
    """Return the OS-SS histogram ``name`` of one selection, model and systematic.

    Datasets and channels are summed. The result keeps the ``flavour`` axis and the value
    axes. Returns None, and logs why at debug level, when the run has no histogram of that
    name or never filled that selection, model or systematic.
    """
    histogram = result["hists"].get(name)
    if histogram is None:
        log.debug("run has no histogram %r", name)
        return None
    requested = {"selection": selection, "model": model, "systematic": systematic}
    for axis, category in requested.items():
        if category not in histogram.axes[axis]:
            log.debug("histogram %r has no %s %r", name, axis, category)
            return None
    region = histogram[{**{axis: hist.loc(category) for axis, category in requested.items()}, "dataset": sum, "channel": sum}]
    return subtract_os_ss(region)


def flavour_sum(histogram: hist.Hist, flavours: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the given flavour categories into arrays of values and variances, flow bins included."""
    view = histogram.view(flow=True)
    axis = histogram.axes["flavour"]
    index = [axis.index(flavour) for flavour in flavours]
    position = histogram.axes.name.index("flavour")
    values = np.take(view["value"], index, axis=position).sum(axis=position)
    variances = np.take(view["variance"], index, axis=position).sum(axis=position)
    return np.asarray(values, dtype=float), np.asarray(variances, dtype=float)


def region_shapes(
    result: Mapping[str, Any], discriminator: str, *, selection: str, model: str, systematic: str = "nominal"
) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Return OS-SS (values, variances) of data and of each MC flavour in the 20 discriminator bins.

    Keys: ``data``, ``b``, ``c``, ``light``. Overflow (a discriminator of exactly 1) joins
    the last bin. Underflow contains the default -1 of jets whose discriminator is undefined,
    and those jets are left out. Returns None when the run lacks that region.
    """
    histogram = region_histogram(result, discriminator, selection=selection, model=model, systematic=systematic)
    if histogram is None:
        return None
    if histogram.ndim != 2:
        names = ", ".join(histogram.axes.name)
        raise ValueError(f"histogram {discriminator!r} has axes {names}; use a one-dimensional discriminator histogram")
    shapes = {}
    for flavour in (DATA_FLAVOUR, *MC_FLAVOURS):
        values, variances = flavour_sum(histogram, [flavour])
        shapes[flavour] = (_fold_overflow(values), _fold_overflow(variances))
    return shapes


def _fold_overflow(with_flow: np.ndarray) -> np.ndarray:
    inner = with_flow[1:-1].copy()
    inner[-1] += with_flow[-1]
    return inner


def mc_total(shapes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the MC flavours of :func:`region_shapes` into (values, variances)."""
    values = sum(shapes[flavour][0] for flavour in MC_FLAVOURS)
    variances = sum(shapes[flavour][1] for flavour in MC_FLAVOURS)
    return values, variances


def summarise(names: Sequence[str], *, limit: int = 6) -> str:
    """Join names for a log message, listing at most ``limit`` and counting the rest."""
    listed = ", ".join(names[:limit])
    return listed if len(names) <= limit else f"{listed} and {len(names) - limit} more"


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON with NaN and infinities stored as null, because strict JSON has no NaN."""
    return write_text_atomic(path, json.dumps(_null_nonfinite(data), indent=2) + "\n")


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV table (comma-separated, one header line, NaN as ``nan``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def _null_nonfinite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {key: _null_nonfinite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_null_nonfinite(value) for value in data]
    return data
