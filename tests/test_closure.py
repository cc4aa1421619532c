"""Closure of the shape fits on toy runs whose true per-flavour SFs are known."""

from __future__ import annotations

import numpy as np
import pytest

from advcalib.scalefactors import ScaleFactorConfig, ctag, derive_model
from advcalib.divergence import jsd
from advcalib.scalefactors.closure import has_truth, jsd_floor, pull_summary, run_closure, truth_scale_factors
from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.toysample import SLOPES, ToySample, toy_result

#: Twice the default mismodelling, so that its effect on the JSD exceeds the statistical noise.
STRONG = {flavour: tuple(2 * s for s in slopes) for flavour, slopes in SLOPES.items()}
CONFIG = ScaleFactorConfig(n_toys=30, seed=3)
#: Fewest fitted bin groups expected per fit: the 1D BvsL grid has only 20 bins per flavour.
MIN_GROUPS = {"ctag": 100, "btag": 100, "bvsl": 30}


@pytest.fixture(scope="module")
def mismodelled():
    result = toy_result(ToySample(n_data=40000, slopes=STRONG), seed=21)
    sfs = derive_model(result, "toy", config=CONFIG)
    return sfs, run_closure(result, sfs, config=CONFIG)


@pytest.fixture(scope="module")
def unmodified():
    result = toy_result(ToySample(n_data=20000, slopes=None), seed=22)
    sfs = derive_model(result, "toy", config=CONFIG)
    return sfs, run_closure(result, sfs, config=CONFIG)


@pytest.mark.parametrize("fit", ["ctag", "btag", "bvsl"])
def test_fitted_sfs_agree_with_truth(mismodelled, fit):
    _, closure = mismodelled
    assert closure[fit]["pull_stat"]["n"] > MIN_GROUPS[fit]
    assert closure[fit]["pull_stat"]["within_1sigma"] >= 0.68


@pytest.mark.parametrize("fit", ["ctag", "btag", "bvsl"])
def test_difference_pulls_are_unit_gaussian(mismodelled, fit):
    _, closure = mismodelled
    pulls = closure[fit]["pull_diff"]
    assert abs(pulls["mean"]) < 0.3
    assert 0.75 < pulls["width"] < 1.3


@pytest.mark.parametrize("fit", ["ctag", "btag", "bvsl"])
def test_sfs_reduce_jsd_in_every_region(mismodelled, fit):
    _, closure = mismodelled
    jsd = closure[fit]["jsd"]
    assert set(jsd) == {"light", "charm", "bottom"}
    entries = [(region, name, values) for region, projections in jsd.items() for name, values in projections.items()]
    assert all(values["significant"] for _, _, values in entries)
    for region, name, values in entries:
        assert values["after"] < values["before"], (region, name, values)


def test_sfs_compatible_with_one_without_mismodelling(unmodified, mismodelled):
    for fit in ("ctag", "btag", "bvsl"):
        clean = unmodified[1][fit]["compatibility_with_one"]
        shifted = mismodelled[1][fit]["compatibility_with_one"]
        assert clean["chi2_per_ndf"] < 1.5
        assert clean["within_1sigma"] >= 0.6
        assert shifted["chi2_per_ndf"] > clean["chi2_per_ndf"]


def test_truth_sf_of_exact_reweighting():
    result = toy_result(ToySample(n_data=3000, slopes=None), seed=1)
    templates = ctag.read_templates(result, model="toy", systematic="nominal")
    fit = ctag.fit(templates, config=FitConfig())
    weight = np.linspace(0.5, 1.5, 400).reshape(20, 20)
    truth = ctag.read_templates(result, model="toy", systematic="nominal", source="truth_hists")
    # Replace the true light yields by the MC yields times a known weight.
    light = 2
    region = templates.regions.index("light")
    mc_os = truth.mc_os.value.copy()
    mc_os[region, light] = templates.mc.value[region, light] * weight
    mc_ss = truth.mc_ss.value.copy()
    mc_ss[region, light] = 0.0
    from advcalib.scalefactors.templates import Templates, Yields

    exact = Templates(truth.regions, truth.data_os, truth.data_ss, Yields(mc_os, truth.mc_os.variance),
                      Yields(mc_ss, truth.mc_ss.variance), truth.edges, truth.axis_names)
    fitted = np.ones_like(fit.fitted)
    labels = np.arange(3 * 400).reshape(3, 20, 20) % 400
    true_sf = truth_scale_factors(exact, templates, labels=labels, fitted=fitted)
    mc = templates.mc.value[region, light]
    populated = mc > 0
    assert populated.sum() > 200
    expected = weight * mc.sum() / (mc * weight).sum()
    np.testing.assert_allclose(true_sf[light][populated], expected[populated])
    assert np.isnan(true_sf[light][mc == 0]).all()


def test_jsd_floor_matches_poisson_expectation():
    rng = np.random.default_rng(5)
    shape = rng.uniform(1.0, 5.0, 20)
    shape /= shape.sum()
    n = 2000
    samples = [jsd(rng.poisson(shape * n), shape) for _ in range(1000)]
    precise_mc = shape * 1e6
    floor = jsd_floor(shape * n, shape * n, precise_mc, precise_mc * 1e-6)
    assert floor == pytest.approx(np.mean(samples), rel=0.1)


def test_pull_summary_known_values():
    summary = pull_summary(np.array([-2.0, -0.5, 0.5, np.nan, 2.0]))
    assert summary["n"] == 4
    assert summary["within_1sigma"] == 0.5
    assert summary["mean"] == 0.0
    assert summary["width"] == pytest.approx(np.std([-2.0, -0.5, 0.5, 2.0], ddof=1))


def test_has_truth():
    result = toy_result(ToySample(n_data=500))
    assert has_truth(result, "toy")
    assert not has_truth(result, "other")
    assert not has_truth({"hists": result["hists"]}, "toy")
