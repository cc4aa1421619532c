"""Toy calibration runs with known per-flavour scale factors, for tests and closure studies.

Each jet's discriminators are drawn from per-flavour Beta distributions, independently of
each other. The pt is 20 GeV plus an exponential and |eta| is uniform. Pseudo-data jets are
drawn from the same distributions and kept with probability proportional to the true SF
weight w_f(CvsL, CvsB) * v_f(BvsAll). The true shape SF of flavour f is then w_f in the c-tag
map and v_f in BvsAll, each normalised over the MC. The output has the layout of a run's
output: ``hists`` with flavour "data" for pseudo-data, and ``truth_hists`` by true flavour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from advcalib import histograms

#: Beta distribution parameters (a, b) of CvsL, CvsB and BvsAll per flavour.
SHAPES: dict[str, dict[str, tuple[float, float]]] = {
    "b": {"CvsL": (3.0, 2.0), "CvsB": (1.5, 4.0), "BvsAll": (5.0, 1.5)},
    "c": {"CvsL": (3.0, 2.0), "CvsB": (3.0, 2.0), "BvsAll": (1.5, 4.0)},
    "light": {"CvsL": (1.2, 5.0), "CvsB": (2.0, 2.0), "BvsAll": (1.0, 8.0)},
}

#: Flavour fractions of the probe jets in each region.
FRACTIONS: dict[str, dict[str, float]] = {
    "light": {"b": 0.04, "c": 0.08, "light": 0.88},
    "charm": {"b": 0.15, "c": 0.55, "light": 0.30},
    "bottom": {"b": 0.78, "c": 0.08, "light": 0.14},
}

#: Linear mismodelling slopes: w_f = 1 + a (CvsL - 0.5) + b (CvsB - 0.5), v_f = 1 + c (BvsAll - 0.5).
SLOPES: dict[str, tuple[float, float, float]] = {
    "b": (0.2, -0.3, 0.4),
    "c": (0.4, 0.2, -0.2),
    "light": (-0.3, 0.2, 0.3),
}

_CHANNEL = {"light": "mm", "charm": "m", "bottom": "m"}
_MC_DATASET = {"light": "dy", "charm": "wjets", "bottom": "ttbar"}


@dataclass(frozen=True)
class ToySample:
    """Size and mismodelling of a toy run; ``slopes`` None or all zero means no mismodelling."""

    n_data: int = 20000
    mc_factor: float = 2.0
    ss_fraction: float = 0.2
    slopes: dict[str, tuple[float, float, float]] | None = field(default_factory=lambda: dict(SLOPES))
    jes_shift: float = 0.0
    model: str = "toy"


def true_weight(flavour: str, jets: dict[str, np.ndarray], slopes) -> np.ndarray:
    """True SF weight of each jet (before normalisation), 1 without mismodelling."""
    if not slopes:
        return np.ones(len(jets["CvsL"]))
    a, b, c = slopes[flavour]
    return (1 + a * (jets["CvsL"] - 0.5) + b * (jets["CvsB"] - 0.5)) * (1 + c * (jets["BvsAll"] - 0.5))


def draw_jets(flavour: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` toy jets of one flavour: discriminators, pt and |eta|."""
    jets = {name: rng.beta(a, b, size=n) for name, (a, b) in SHAPES[flavour].items()}
    jets["pt"] = 20.0 + rng.exponential(45.0, size=n)
    jets["abseta"] = rng.uniform(0.0, 2.5, size=n)
    return jets


def toy_result(sample: ToySample = ToySample(), *, seed: int = 1) -> dict:
    """Build a run-like output dictionary from a toy sample."""
    rng = np.random.default_rng(seed)
    hists = histograms.make_histograms()
    truth = histograms.make_histograms()
    for region, fractions in FRACTIONS.items():
        for flavour, fraction in fractions.items():
            for osss, scale in ((1, 1.0), (-1, sample.ss_fraction)):
                expected = sample.n_data * fraction * scale
                _fill_mc(hists, sample, region, flavour, osss, int(expected * sample.mc_factor), rng)
                data = _draw_data(sample, flavour, int(rng.poisson(expected)), rng)
                _fill(hists, data, dataset="data", region=region, flavour="data", osss=osss, model=sample.model)
                _fill(truth, data, dataset="data", region=region, flavour=flavour, osss=osss, model=sample.model)
    return {"hists": hists, "truth_hists": truth, "models": {sample.model: "toy"}, "lumi": 1.0}


def _fill_mc(hists, sample: ToySample, region, flavour, osss, n, rng) -> None:
    jets = draw_jets(flavour, n, rng)
    weight = 1.0 / sample.mc_factor
    _fill(hists, jets, dataset=_MC_DATASET[region], region=region, flavour=flavour, osss=osss, model=sample.model, weight=weight)
    if sample.jes_shift:
        for name, factor in (("jesUp", 1 + sample.jes_shift), ("jesDown", 1 - sample.jes_shift)):
            shifted = dict(jets, pt=jets["pt"] * factor)
            _fill(hists, shifted, dataset=_MC_DATASET[region], region=region, flavour=flavour, osss=osss,
                  model=sample.model, weight=weight, systematic=name)


def _draw_data(sample: ToySample, flavour: str, n: int, rng) -> dict[str, np.ndarray]:
    parts = []
    kept = 0
    while kept < n:
        jets = draw_jets(flavour, 2 * (n - kept) + 10, rng)
        weight = true_weight(flavour, jets, sample.slopes)
        keep = rng.uniform(0.0, weight.max() if len(weight) else 1.0, size=len(weight)) < weight
        chosen = {name: values[keep][: n - kept] for name, values in jets.items()}
        kept += len(chosen["pt"])
        parts.append(chosen)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _fill(hists, jets, *, dataset, region, flavour, osss, model, weight=1.0, systematic="nominal") -> None:
    common = dict(dataset=dataset, selection=region, channel=_CHANNEL[region], model=model, flavour=flavour,
                  osss=osss, systematic=systematic, weight=weight)
    hists["CvsL_CvsB"].fill(**common, CvsL=jets["CvsL"], CvsB=jets["CvsB"])
    hists["CvsL"].fill(**common, CvsL=jets["CvsL"])
    hists["CvsB"].fill(**common, CvsB=jets["CvsB"])
    hists["BvsL"].fill(**common, BvsL=jets["BvsAll"])
    hists["BvsAll"].fill(**common, pt=jets["pt"], abseta=jets["abseta"], BvsAll=jets["BvsAll"])
    hists["probe_pt"].fill(**common, pt=jets["pt"])
