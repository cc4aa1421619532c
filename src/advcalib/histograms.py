"""Histogram layout of a calibration run: the one definition of every axis.

Each histogram has the category axes ``dataset``, ``selection``, ``channel``, ``model``,
``flavour``, ``osss`` and ``systematic`` followed by its value axes. The processor fills
them, and the divergence, efficiency, scale-factor and plotting steps read them.
"""

from __future__ import annotations

import hist
import numpy as np

#: Calibration regions: light-enriched (DY+jets), charm-enriched (W+c), bottom-enriched (tt).
SELECTIONS: tuple[str, ...] = ("light", "charm", "bottom")

#: Flavour categories of the probe jet; ``data`` for collision data (no truth).
FLAVOURS: tuple[str, ...] = ("b", "c", "light", "data")

#: hadronFlavour code of each MC flavour category (correctionlib's ``flavor`` input).
HADRON_FLAVOUR: dict[str, int] = {"b": 5, "c": 4, "light": 0}

#: Discriminators filled in one dimension, with their binning.
DISCRIMINATORS: tuple[str, ...] = ("BvsL", "CvsB", "CvsL")
DISCRIMINATOR_BINS: int = 20

#: Pt and |eta| bins of the b-tag shape histogram.
PT_EDGES: tuple[float, ...] = (20.0, 30.0, 50.0, 70.0, 100.0, 140.0, 200.0, 300.0, 1000.0)
ABSETA_EDGES: tuple[float, ...] = (0.0, 1.2, 2.5)


def category_axes() -> list[hist.axis.AxisProtocol]:
    """Category axes shared by every histogram of a run, in their fixed order."""
    return [
        hist.axis.StrCategory([], name="dataset", growth=True, label="Dataset"),
        hist.axis.StrCategory([], name="selection", growth=True, label="Selection"),
        hist.axis.StrCategory([], name="channel", growth=True, label="Channel"),
        hist.axis.StrCategory([], name="model", growth=True, label="Model"),
        hist.axis.StrCategory(list(FLAVOURS), name="flavour", label="Flavour"),
        hist.axis.IntCategory([1, -1], name="osss", label="OS (+1) or SS (-1)"),
        hist.axis.StrCategory([], name="systematic", growth=True, label="Systematic"),
    ]


def discriminator_axis(name: str) -> hist.axis.Regular:
    """Value axis of one discriminator on [0, 1]; the default value -1 goes to underflow."""
    return hist.axis.Regular(DISCRIMINATOR_BINS, 0.0, 1.0, name=name, label=name)


def make_histograms() -> dict[str, hist.Hist]:
    """Create the empty histograms of a calibration run, keyed by name.

    ``BvsL``, ``CvsB``, ``CvsL``: one discriminator each. ``CvsL_CvsB``: the 2D map the
    c-tag shape fit uses. ``BvsAll``: the b-tag shape fit's discriminant in bins of probe
    jet pt and |eta|. ``probe_pt``: the probe jet pt, for control plots.
    """
    hists: dict[str, hist.Hist] = {}
    for name in DISCRIMINATORS:
        hists[name] = hist.Hist(*category_axes(), discriminator_axis(name), storage=hist.storage.Weight())
    hists["CvsL_CvsB"] = hist.Hist(
        *category_axes(), discriminator_axis("CvsL"), discriminator_axis("CvsB"), storage=hist.storage.Weight()
    )
    hists["BvsAll"] = hist.Hist(
        *category_axes(),
        hist.axis.Variable(PT_EDGES, name="pt", label="Probe jet $p_T$ [GeV]"),
        hist.axis.Variable(ABSETA_EDGES, name="abseta", label=r"Probe jet $|\eta|$"),
        discriminator_axis("BvsAll"),
        storage=hist.storage.Weight(),
    )
    hists["probe_pt"] = hist.Hist(
        *category_axes(),
        hist.axis.Regular(40, 20.0, 420.0, name="pt", label="Probe jet $p_T$ [GeV]"),
        storage=hist.storage.Weight(),
    )
    return hists


def subtract_os_ss(h: hist.Hist) -> hist.Hist:
    """Return OS minus SS of a histogram with an ``osss`` axis, the axis removed.

    The values subtract and the variances add, because the OS and SS events are
    independent samples. A bin where SS exceeds OS comes out negative; the callers decide
    what to do with it (the JSD excludes such bins).
    """
    if "osss" not in h.axes.name:
        raise ValueError(f"histogram has no 'osss' axis (axes: {', '.join(h.axes.name)}); fill it with osss first")
    opposite = h[{"osss": hist.loc(1)}]
    same = h[{"osss": hist.loc(-1)}]
    result = opposite.copy()
    view = result.view(flow=True)
    same_view = same.view(flow=True)
    view["value"] = opposite.view(flow=True)["value"] - same_view["value"]
    view["variance"] = opposite.view(flow=True)["variance"] + same_view["variance"]
    return result


def values_and_variances(h: hist.Hist) -> tuple[np.ndarray, np.ndarray]:
    """Bin contents and variances of a Weight-storage histogram (no flow bins)."""
    view = h.view()
    return np.asarray(view["value"]), np.asarray(view["variance"])
