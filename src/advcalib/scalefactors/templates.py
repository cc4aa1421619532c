"""Data and per-flavour MC yields of the calibration regions, read from a run's histograms.

The fits work on plain arrays: ``[region, *grid]`` for data and ``[region, flavour, *grid]``
for MC, summed over datasets and channels. Both the OS-SS subtracted yields (the fit's input)
and the separate OS and SS yields (the pseudo-experiments' input) are kept.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import hist
import numpy as np

from advcalib import histograms

log = logging.getLogger(__name__)

#: MC flavour categories fitted, in the order of the arrays' flavour index.
MC_FLAVOURS: tuple[str, ...] = ("b", "c", "light")

#: Target flavour of each calibration region.
REGION_TARGET: dict[str, str] = {"light": "light", "charm": "c", "bottom": "b"}

_UP_DOWN = re.compile(r"^(?P<base>.+?)_?(?P<direction>up|down)$", re.IGNORECASE)


@dataclass(frozen=True)
class Yields:
    """Bin contents and variances; ``value`` and ``variance`` share one shape."""

    value: np.ndarray
    variance: np.ndarray

    def __sub__(self, other: Yields) -> Yields:
        # Same rule as histograms.subtract_os_ss: values subtract, variances of independent samples add.
        return Yields(self.value - other.value, self.variance + other.variance)

    def scaled(self, factor: float | np.ndarray) -> Yields:
        factor = np.asarray(factor)
        return Yields(self.value * factor, self.variance * factor**2)


@dataclass(frozen=True)
class Templates:
    """OS and SS yields of data ``[R, *grid]`` and MC ``[R, F, *grid]`` on one bin grid."""

    regions: tuple[str, ...]
    data_os: Yields
    data_ss: Yields
    mc_os: Yields
    mc_ss: Yields
    edges: tuple[np.ndarray, ...]
    axis_names: tuple[str, ...]

    @property
    def data(self) -> Yields:
        """OS-SS data."""
        return self.data_os - self.data_ss

    @property
    def mc(self) -> Yields:
        """OS-SS MC per flavour."""
        return self.mc_os - self.mc_ss

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return self.data_os.value.shape[1:]

    def with_mc(self, other: Templates) -> Templates:
        """Copy with the MC yields of ``other`` (a systematic variation) and this data."""
        return Templates(self.regions, self.data_os, self.data_ss, other.mc_os, other.mc_ss, self.edges, self.axis_names)


def model_names(result: dict) -> list[str]:
    """Models present in a run's histograms."""
    return list(_hists(result)["CvsL_CvsB"].axes["model"])


def paired_systematics(names: list[str], *, nominal: str = "nominal") -> dict[str, dict[str, str]]:
    """Group ``systematic`` axis entries into up/down pairs keyed by a lower-case variation name.

    ``jesUp``/``jesDown`` and ``jes_up``/``jes_down`` give ``jes``; ``PS_ISR_up``/``PS_ISR_down``
    give ``ps_isr``. Entries without both directions are ignored and logged.
    """
    pairs: dict[str, dict[str, str]] = {}
    for name in names:
        match = _UP_DOWN.match(name)
        if name == nominal or not match:
            continue
        key = re.sub(r"[^a-z0-9]+", "_", match["base"].lower()).strip("_")
        pairs.setdefault(key, {})[match["direction"].lower()] = name
    for key in [k for k, v in pairs.items() if set(v) != {"up", "down"}]:
        log.warning("systematic entries %s have no up/down partner; they are not used", sorted(pairs.pop(key).values()))
    return pairs


def mc_systematics(result: dict, *, nominal: str = "nominal") -> dict[str, dict[str, str]]:
    """Up/down pairs of the run's ``systematic`` axis (JES, parton-shower weights, ...), see paired_systematics."""
    return paired_systematics(list(_hists(result)["CvsL_CvsB"].axes["systematic"]), nominal=nominal)


def extract(
    result: dict, *, name: str, model: str, systematic: str, source: str = "hists"
) -> Templates:
    """Read histogram ``name`` of ``model`` into OS/SS arrays per region and flavour.

    A region missing from the ``selection`` axis gives zero yields, so its target flavour
    keeps SF = 1. ``source="truth_hists"`` reads the pseudo-data split by true flavour into
    the MC slots (the data slots are then the sum over flavours).
    """
    h = _select(_hists(result, source)[name], name=name, model=model, systematic=systematic)
    regions = histograms.SELECTIONS
    data_os, data_ss, mc_os, mc_ss = [], [], [], []
    for region in regions:
        data_os.append(_slice(h, region, "data", 1))
        data_ss.append(_slice(h, region, "data", -1))
        mc_os.append([_slice(h, region, flavour, 1) for flavour in MC_FLAVOURS])
        mc_ss.append([_slice(h, region, flavour, -1) for flavour in MC_FLAVOURS])
    if source == "truth_hists":
        data_os = [_sum_yields(parts) for parts in mc_os]
        data_ss = [_sum_yields(parts) for parts in mc_ss]
    value_axes = [ax for ax in h.axes if ax.name not in ("selection", "flavour", "osss")]
    return Templates(
        regions=regions,
        data_os=_stack(data_os),
        data_ss=_stack(data_ss),
        mc_os=_stack([_stack(parts) for parts in mc_os]),
        mc_ss=_stack([_stack(parts) for parts in mc_ss]),
        edges=tuple(np.asarray(ax.edges) for ax in value_axes),
        axis_names=tuple(ax.name for ax in value_axes),
    )


def _hists(result: dict, source: str = "hists") -> dict[str, hist.Hist]:
    if source not in result or not isinstance(result[source], dict):
        raise ValueError(f"run output has no '{source}' dictionary (keys: {', '.join(map(str, result))})")
    return result[source]


def _select(h: hist.Hist, *, name: str, model: str, systematic: str) -> hist.Hist:
    models = list(h.axes["model"])
    if model not in models:
        raise ValueError(f"histogram '{name}' has no model '{model}' (models: {', '.join(models)})")
    systematics = list(h.axes["systematic"])
    if systematic not in systematics:
        raise ValueError(
            f"histogram '{name}' has no systematic '{systematic}' (entries: {', '.join(systematics)});"
            " set the nominal systematic name"
        )
    return h[{"model": hist.loc(model), "systematic": hist.loc(systematic), "dataset": sum, "channel": sum}]


def _slice(h: hist.Hist, region: str, flavour: str, sign: int) -> Yields:
    shape = tuple(len(ax) for ax in h.axes if ax.name not in ("selection", "flavour", "osss"))
    if region not in list(h.axes["selection"]):
        return Yields(np.zeros(shape), np.zeros(shape))
    view = h[{"selection": hist.loc(region), "flavour": hist.loc(flavour), "osss": hist.loc(sign)}].view()
    return Yields(np.array(view["value"], dtype=float), np.array(view["variance"], dtype=float))


def _stack(parts: list[Yields]) -> Yields:
    return Yields(np.stack([p.value for p in parts]), np.stack([p.variance for p in parts]))


def _sum_yields(parts: list[Yields]) -> Yields:
    return Yields(sum(p.value for p in parts), sum(p.variance for p in parts))
