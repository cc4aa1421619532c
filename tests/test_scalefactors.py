"""Shape fits, bin grouping, pseudo-experiments, variations and WP SFs on hand-built histograms."""

from __future__ import annotations

import json
import logging
import os
import stat

import numpy as np
import pytest

from advcalib.cli import main
from advcalib.histograms import make_histograms
from advcalib.scalefactors import ScaleFactorConfig, btag, ctag, derive_model, derive_scale_factors
from advcalib.scalefactors.config import FitConfig
from advcalib.scalefactors.fit import global_chi2
from advcalib.scalefactors.grouping import adaptive_groups, check_levels
from advcalib.scalefactors.systematics import derive_variations
from advcalib.scalefactors.templates import paired_systematics
from advcalib.scalefactors.toys import statistical_uncertainty, toy_scale_factors
from advcalib.scalefactors.toysample import ToySample, toy_result
from advcalib.scalefactors.wp import (
    pass_mask,
    set_unfitted_uncertainty,
    unfitted_cells,
    wp_scale_factors,
    working_points,
)

GRID = 20
CENTRES = (np.arange(GRID) + 0.5) / GRID
X, Y = np.meshgrid(CENTRES, CENTRES, indexing="ij")
#: Smooth positive shapes of light and c jets on the CvsL x CvsB map (their ratio stays in [0.3, 3]).
LIGHT_SHAPE = 1.5 - X
C_SHAPE = 0.5 + X * Y


def set_bins(hists, *, selection, flavour, values, variances=None, osss=1, model="m", systematic="nominal"):
    """Write bin contents of the CvsL_CvsB map of one category directly into the histogram."""
    h = hists["CvsL_CvsB"]
    h.fill(dataset="d", selection=selection, channel="c", model=model, flavour=flavour, osss=osss,
           systematic=systematic, CvsL=0.5, CvsB=0.5, weight=0.0)
    index = tuple(h.axes[name].index(key) for name, key in (
        ("dataset", "d"), ("selection", selection), ("channel", "c"), ("model", model), ("flavour", flavour),
        ("osss", osss), ("systematic", systematic)))
    view = h.view()[index]
    view["value"] = values
    view["variance"] = values if variances is None else variances


def normalised(sf, shape):
    """SF scaled so that the shape's yield is unchanged, the fit's convention."""
    return sf * shape.sum() / (shape * sf).sum()


def exact_two_flavour_result(light_sf, c_sf):
    hists = make_histograms()
    yields = {"light": {"light": 2000.0, "c": 400.0}, "charm": {"light": 600.0, "c": 1600.0}}
    for region, parts in yields.items():
        light = parts["light"] * LIGHT_SHAPE
        c = parts["c"] * C_SHAPE
        set_bins(hists, selection=region, flavour="light", values=light, variances=light * 1e-3)
        set_bins(hists, selection=region, flavour="c", values=c, variances=c * 1e-3)
        set_bins(hists, selection=region, flavour="data", values=light * light_sf + c * c_sf)
    return {"hists": hists}


def test_single_flavour_recovers_known_sf():
    true_sf = 1.0 + 0.4 * (X - 0.5) - 0.2 * (Y - 0.5)
    hists = make_histograms()
    mc = 1000.0 * LIGHT_SHAPE
    set_bins(hists, selection="light", flavour="light", values=mc, variances=mc * 1e-3)
    set_bins(hists, selection="light", flavour="data", values=1.3 * mc * true_sf)
    templates = ctag.read_templates({"hists": hists}, model="m", systematic="nominal")
    result = ctag.fit(templates, config=FitConfig(learning_rate=0.5))
    light = 2
    assert result.fitted[light].all()
    np.testing.assert_allclose(result.sf[light], normalised(true_sf, mc), rtol=1e-6)
    assert not result.fitted[:2].any()
    np.testing.assert_array_equal(result.sf[:2], 1.0)
    assert result.normalisation["light"] == pytest.approx(1.3 * (mc * true_sf).sum() / mc.sum())


def test_two_flavours_with_contamination():
    light_sf = normalised(1.0 + 0.3 * (X - 0.5), LIGHT_SHAPE)
    c_sf = normalised(1.0 - 0.4 * (Y - 0.5), C_SHAPE)
    templates = ctag.read_templates(exact_two_flavour_result(light_sf, c_sf), model="m", systematic="nominal")
    result = ctag.fit(templates, config=FitConfig(learning_rate=0.7, max_iterations=200, tolerance=0.0))
    assert result.fitted[1:].all()
    np.testing.assert_allclose(result.sf[2], light_sf, rtol=1e-4)
    np.testing.assert_allclose(result.sf[1], c_sf, rtol=1e-4)
    assert result.order == ["light", "charm"]


def test_contamination_ignored_biases_sf():
    light_sf = normalised(1.0 + 0.3 * (X - 0.5), LIGHT_SHAPE)
    c_sf = normalised(1.0 - 0.4 * (Y - 0.5), C_SHAPE)
    templates = ctag.read_templates(exact_two_flavour_result(light_sf, c_sf), model="m", systematic="nominal")
    config = FitConfig(contamination_scale=1.2, max_iterations=200, tolerance=0.0)
    shifted = ctag.fit(templates, config=config)
    assert np.abs(shifted.sf[1] - c_sf).max() > 1e-3


def test_fit_stops_when_chi2_stops_improving():
    result = toy_result(ToySample(n_data=20000), seed=2)
    templates = ctag.read_templates(result, model="toy", systematic="nominal")
    config = FitConfig(preserve_flavour_yield=False, learning_rate=0.3)
    fit = ctag.fit(templates, config=config)
    assert fit.converged
    assert fit.n_iterations == len(fit.chi2) - 1
    assert fit.n_iterations < config.max_iterations
    assert all(later < earlier for earlier, later in zip(fit.chi2[:-2], fit.chi2[1:-1]))
    assert fit.chi2[-2] - fit.chi2[-1] <= config.tolerance * fit.chi2[-2]
    # The kept SFs are those of the best chi2, not of the last trial.
    from advcalib.scalefactors.fit import _normalise, _targets

    mc, _ = _normalise(templates.data, templates.mc)
    targets = _targets(templates.regions, templates.data, mc)
    assert global_chi2(templates.data, mc, fit.sf, targets=targets) == pytest.approx(min(fit.chi2))


def test_fit_iteration_limit_warns(caplog):
    templates = ctag.read_templates(toy_result(ToySample(n_data=5000)), model="toy", systematic="nominal")
    with caplog.at_level(logging.WARNING, logger="advcalib.scalefactors.fit"):
        fit = ctag.fit(templates, config=FitConfig(max_iterations=1, learning_rate=0.1))
    assert not fit.converged
    assert fit.n_iterations == 1
    assert "did not converge" in caplog.text


def test_sparse_bins_keep_unit_sf():
    hists = make_histograms()
    mc = 1000.0 * LIGHT_SHAPE
    mc[:, 15:] = 0.0
    mc[0, 19] = 0.5
    set_bins(hists, selection="light", flavour="light", values=mc, variances=mc * 1e-3)
    data = mc * 1.2
    data[0, 19] = 3.0
    set_bins(hists, selection="light", flavour="data", values=data)
    templates = ctag.read_templates({"hists": hists}, model="m", systematic="nominal")
    fit = ctag.fit(templates, config=FitConfig())
    assert not fit.fitted[2][:, 15:].any()
    np.testing.assert_array_equal(fit.sf[2][:, 15:], 1.0)
    assert fit.fitted[2][:, :15].all()


def test_grouping_merges_sparse_blocks():
    signal = np.full((GRID, GRID), 400.0)
    signal[16:, 16:] = 1.0
    labels = adaptive_groups(signal, signal, levels=ctag.block_levels(), max_relative_uncertainty=0.2)
    assert (labels >= 0).all()
    corner = np.unique(labels[16:, 16:])
    assert len(corner) == 1
    assert len(np.unique(labels)) == GRID * GRID - 16 + 1


def test_grouping_rejects_non_nested_levels():
    with pytest.raises(ValueError, match="does not tile"):
        check_levels((20, 20), [(20, 20), (3, 3), (1, 1)])
    with pytest.raises(ValueError, match="whole grid"):
        check_levels((20, 20), [(4, 4), (1, 1)])


def test_toys_reproduce_expected_spread():
    # Every bin has N data events and a precise MC. The SF of a bin is then a multinomial
    # fraction ratio with relative spread sqrt((1 - p) / N), p = 1 / 400.
    hists = make_histograms()
    n = 400.0
    mc = np.full((GRID, GRID), n)
    set_bins(hists, selection="light", flavour="light", values=mc, variances=mc * 1e-4)
    set_bins(hists, selection="light", flavour="data", values=mc.copy())
    templates = ctag.read_templates({"hists": hists}, model="m", systematic="nominal")
    config = FitConfig(learning_rate=1.0)
    central = ctag.fit(templates, config=config)
    toys = toy_scale_factors(templates, fit=lambda t, grouping: ctag.fit(t, config=config, grouping=grouping),
                             grouping=central.grouping, n_toys=100, seed=3)
    sigma = statistical_uncertainty(toys)[2]
    expected = np.sqrt((1 - 1 / (GRID * GRID)) / n)
    assert sigma.mean() == pytest.approx(expected, rel=0.05)
    assert np.abs(toys[:, 2].mean(axis=0) - 1.0).mean() < 3 * expected / np.sqrt(100)


def test_toys_are_seeded():
    templates = btag.read_templates(toy_result(ToySample(n_data=3000)), model="toy", systematic="nominal")
    central = btag.fit(templates, config=FitConfig())
    refit = lambda t, grouping: btag.fit(t, config=FitConfig(), grouping=grouping)  # noqa: E731
    first = toy_scale_factors(templates, fit=refit, grouping=central.grouping, n_toys=3, seed=7)
    again = toy_scale_factors(templates, fit=refit, grouping=central.grouping, n_toys=3, seed=7)
    other = toy_scale_factors(templates, fit=refit, grouping=central.grouping, n_toys=3, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.fixture(scope="module")
def toy_with_jes():
    result = toy_result(ToySample(n_data=8000, jes_shift=0.05), seed=4)
    return result, derive_model(result, "toy", config=ScaleFactorConfig(n_toys=10))


def test_variations_named_and_ordered(toy_with_jes):
    _, sfs = toy_with_jes
    expected = {"central"} | {f"{d}_{n}" for d in ("up", "down") for n in ("stat", "stats1", "stats2", "contam", "jes")}
    for shape in (sfs.ctag, sfs.btag, sfs.bvsl):
        assert set(shape.variations) == expected
        v = shape.variations
        assert (v["up_stat"] >= v["central"]).all()
        assert (v["down_stat"] <= v["central"]).all()
        assert (v["down_stat"] >= 0).all()
        assert not np.allclose(v["up_contam"], v["down_contam"])
        assert (shape.sigma[~shape.fit.fitted] == ScaleFactorConfig().fit.unfitted_uncertainty).all()
    # pt enters neither the c-tag map nor BvsL, so the JES-shifted MC gives the same SFs there.
    np.testing.assert_allclose(sfs.ctag.variations["up_jes"], sfs.ctag.variations["central"])
    assert not np.allclose(sfs.btag.variations["up_jes"], sfs.btag.variations["central"])
    np.testing.assert_allclose(sfs.bvsl.variations["up_jes"], sfs.bvsl.variations["central"])


def test_paired_systematics_names():
    names = ["nominal", "PS_ISR_up", "PS_ISR_down", "PS_FSR_up", "jesUp", "jesDown", "jer_Up", "jer_Down"]
    pairs = paired_systematics(names)
    assert pairs == {
        "ps_isr": {"up": "PS_ISR_up", "down": "PS_ISR_down"},
        "jes": {"up": "jesUp", "down": "jesDown"},
        "jer": {"up": "jer_Up", "down": "jer_Down"},
    }


def test_variations_without_jes():
    result = toy_result(ToySample(n_data=3000), seed=5)
    templates = ctag.read_templates(result, model="toy", systematic="nominal")
    config = ScaleFactorConfig(n_toys=3)
    central = ctag.fit(templates, config=config.fit)
    variations, sigma = derive_variations(templates, fit=ctag.fit, central=central,
                                          coordinate=ctag.shape_coordinate(templates), config=config)
    assert not any("jes" in name for name in variations)
    assert sigma.shape == central.sf.shape


def test_wp_sf_known_answer():
    # One flavour, 1D grid of 4 bins with equal MC; SF 2 in the two passing bins, 1 below.
    mc = np.full((1, 4), 10.0)
    sf = np.array([[1.0, 1.0, 2.0, 2.0]])
    mask = np.array([False, False, True, True])
    result = wp_scale_factors(mc, sf, mask, sum_axes=(0,))
    # eff_mc = 1/2, eff_data = 40/60 = 2/3
    assert result[0] == pytest.approx(4.0 / 3.0)


def test_wp_sf_empty_flavour_is_one():
    result = wp_scale_factors(np.zeros((1, 4)), np.full((1, 4), 2.0), np.array([False, True, True, True]), sum_axes=(0,))
    assert result[0] == 1.0


def test_wp_masks_follow_efficiency_table():
    edges = (np.linspace(0, 1, 21),)
    points = working_points("BvsAll")
    assert set(points) == {"L", "M", "T"}
    passing = {level: int(pass_mask(point, axis_names=("BvsAll",), edges=edges).sum()) for level, point in points.items()}
    assert passing["L"] > passing["M"] > passing["T"] > 0
    ctag_points = working_points("CvsL_CvsB")
    mask = pass_mask(ctag_points["M"], axis_names=("CvsL", "CvsB"), edges=edges * 2)
    assert mask.shape == (20, 20)
    assert mask[-1, -1]
    assert not mask[0, 0]


def test_missing_model_and_systematic_named():
    result = toy_result(ToySample(n_data=500))
    with pytest.raises(ValueError, match="no model 'other'.*toy"):
        ctag.read_templates(result, model="other", systematic="nominal")
    with pytest.raises(ValueError, match="no systematic 'jesUp'.*nominal"):
        ctag.read_templates(result, model="toy", systematic="jesUp")


def test_missing_region_keeps_unit_sf():
    result = toy_result(ToySample(n_data=3000))
    h = result["hists"]["CvsL_CvsB"]
    view = h.view(flow=True)
    bottom = h.axes["selection"].index("bottom")
    view["value"][:, bottom] = 0.0
    view["variance"][:, bottom] = 0.0
    templates = ctag.read_templates(result, model="toy", systematic="nominal")
    fit = ctag.fit(templates, config=FitConfig())
    assert not fit.fitted[0].any()
    np.testing.assert_array_equal(fit.sf[0], 1.0)
    assert fit.fitted[1].any()
    assert fit.fitted[2].any()


def test_refit_keeps_flavour_without_groups():
    single = exact_two_flavour_result(np.ones_like(X), np.ones_like(X))
    central = ctag.fit(ctag.read_templates(single, model="m", systematic="nominal"), config=FitConfig())
    assert (central.grouping.labels[0] == -1).all()
    # A pseudo-experiment can put entries into the region that was empty in the central fit.
    hists = single["hists"]
    set_bins(hists, selection="bottom", flavour="b", values=50.0 * C_SHAPE)
    set_bins(hists, selection="bottom", flavour="data", values=60.0 * C_SHAPE)
    refit = ctag.fit(ctag.read_templates(single, model="m", systematic="nominal"),
                     config=FitConfig(), grouping=central.grouping)
    np.testing.assert_array_equal(refit.sf[0], 1.0)
    assert not refit.fitted[0].any()


def test_derive_scale_factors_writes_outputs(tmp_path):
    result = toy_result(ToySample(n_data=3000))
    del result["truth_hists"]
    summary = derive_scale_factors(result, tmp_path / "sf", config=ScaleFactorConfig(n_toys=3, plots=False))
    out = tmp_path / "sf"
    assert (out / "sf_toy.json.gz").is_file()
    assert (out / "diagnostics.json").is_file()
    assert not (out / "closure.json").exists()
    assert "closure" not in summary["models"]["toy"]
    assert summary["models"]["toy"]["ctag"]["n_iterations"] >= 1
    assert not list(out.glob(".*tmp"))


def test_cli_scalefactors(tmp_path, capsys):
    from coffea.util import save

    path = tmp_path / "hists.coffea"
    save(toy_result(ToySample(n_data=3000)), str(path))
    assert main(["scalefactors", str(path), "--out", str(tmp_path / "out"), "--toys", "3"]) == 0
    output = capsys.readouterr().out
    assert "toy:" in output
    assert "closure pulls" in output
    for name in ("sf_toy.json.gz", "diagnostics.json", "closure.json", "sf_toy_ctag.png", "closure_pulls_toy.png"):
        assert (tmp_path / "out" / name).is_file(), name
    for name in ("diagnostics.json", "closure.json"):
        text = (tmp_path / "out" / name).read_text()
        json.loads(text, parse_constant=lambda token: pytest.fail(f"{name} contains {token}, which strict JSON rejects"))


def test_cli_rejects_missing_file(tmp_path, capsys):
    missing = tmp_path / "none.coffea"
    assert main(["scalefactors", str(missing), "--out", str(tmp_path)]) == 1
    assert str(missing) in capsys.readouterr().out


class _Records(logging.Handler):
    """Collects the log records of advcalib at every level."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _without_region(result, region):
    """Zero every histogram's entries of one selection, as in a run whose region selected nothing."""
    for h in result["hists"].values():
        index = h.axes["selection"].index(region)
        h.view(flow=True)["value"][:, index] = 0.0
        h.view(flow=True)["variance"][:, index] = 0.0
    return result


@pytest.fixture(scope="module")
def sparse_toy():
    """Toy without a bottom region (b unfitted) and so few jets that c has a single usable group in the c-tag fit."""
    result = _without_region(toy_result(ToySample(n_data=300), seed=1), "bottom")
    handler = _Records()
    logger = logging.getLogger("advcalib.scalefactors")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        sfs = derive_model(result, "toy", config=ScaleFactorConfig(n_toys=4))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return sfs, handler.records


def test_unfitted_flavour_wp_carries_uncertainty(sparse_toy):
    sfs, _ = sparse_toy
    unfitted = ScaleFactorConfig().fit.unfitted_uncertainty
    b, c = 0, 1
    assert not sfs.ctag.fit.fitted[b].any()
    assert not sfs.ctag.fit.fitted[c].any()
    for level in ("L", "M", "T"):
        for f in (b, c):
            assert sfs.ctag_wp["central"][level][f] == pytest.approx(1.0)
            for name in ("stat", "stats1", "stats2"):
                assert sfs.ctag_wp[f"up_{name}"][level][f] == pytest.approx(1.0 + unfitted)
                assert sfs.ctag_wp[f"down_{name}"][level][f] == pytest.approx(1.0 - unfitted)
            assert sfs.ctag_wp["up_contam"][level][f] == pytest.approx(1.0)
        np.testing.assert_allclose(sfs.btag_wp["up_stat"][level][b], 1.0 + unfitted)
        np.testing.assert_allclose(sfs.btag_wp["down_stat"][level][b], 1.0 - unfitted)


def test_fitted_flavour_wp_keeps_computed_variations(sparse_toy):
    sfs, _ = sparse_toy
    light = 2
    assert sfs.btag.fit.fitted[light].any()
    mask = pass_mask(working_points("BvsAll")["M"], axis_names=sfs.btag.templates.axis_names,
                     edges=sfs.btag.templates.edges)
    mc = sfs.btag.templates.mc.value.sum(axis=0)
    expected = wp_scale_factors(mc, sfs.btag.variations["up_stat"], mask, sum_axes=(2,))[light]
    fitted_cells = sfs.btag.fit.fitted[light].any(axis=-1)
    np.testing.assert_allclose(sfs.btag_wp["up_stat"]["M"][light][fitted_cells], expected[fitted_cells])


def test_set_unfitted_uncertainty_known_answer():
    variations = {
        "central": {"M": np.array([1.0, 0.8])},
        "up_stat": {"M": np.array([1.0, 0.9])},
        "down_stats1": {"M": np.array([1.0, 0.7])},
        "up_contam": {"M": np.array([1.0, 0.85])},
    }
    unfitted = unfitted_cells(np.array([[False, False], [True, False]]), sum_axes=(0,))
    np.testing.assert_array_equal(unfitted, [True, False])
    out = set_unfitted_uncertainty(variations, unfitted, uncertainty=0.5)
    np.testing.assert_allclose(out["up_stat"]["M"], [1.5, 0.9])
    np.testing.assert_allclose(out["down_stats1"]["M"], [0.5, 0.7])
    np.testing.assert_allclose(out["up_contam"]["M"], [1.0, 0.85])
    np.testing.assert_allclose(variations["up_stat"]["M"], [1.0, 0.9])


def test_fit_conditions_logged_once_per_fit(sparse_toy):
    _, records = sparse_toy
    loud = [r for r in records if r.levelno >= logging.INFO]
    empty_region = [r for r in loud if "has no OS-SS events" in r.getMessage()]
    single_group = [r for r in loud if "single usable bin group" in r.getMessage()]
    # One central fit each for c-tag, b-tag and BvsL; 4 pseudo-experiments and 2 contamination refits each stay quiet.
    assert len(empty_region) == 3
    assert all("bottom" in r.getMessage() for r in empty_region)
    assert single_group
    per_flavour = {}
    for record in single_group:
        per_flavour[record.getMessage()] = per_flavour.get(record.getMessage(), 0) + 1
    assert max(per_flavour.values()) <= 3
    assert any("single usable bin group" in r.getMessage() for r in records if r.levelno == logging.DEBUG)


def test_refit_with_grouping_logs_at_debug(caplog):
    result = _without_region(toy_result(ToySample(n_data=300), seed=1), "bottom")
    templates = ctag.read_templates(result, model="toy", systematic="nominal")
    central = ctag.fit(templates, config=FitConfig())
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="advcalib.scalefactors.fit"):
        ctag.fit(templates, config=FitConfig(), grouping=central.grouping)
    assert "has no OS-SS events" in caplog.text
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_empty_run_writes_no_payload(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="advcalib.scalefactors"):
        summary = derive_scale_factors({"hists": make_histograms(), "models": {"stored": "stored"}}, tmp_path,
                                       config=ScaleFactorConfig(n_toys=2, plots=False))
    assert summary["models"] == {}
    assert "no model" in summary["no_payload"]
    assert not list(tmp_path.glob("sf_*"))
    assert [p.name for p in tmp_path.iterdir()] == ["diagnostics.json"]
    assert "no payload written" in caplog.text


def test_model_without_entries_skipped(tmp_path):
    hists = make_histograms()
    # The model category exists, but every entry has weight 0, as in a run whose events all failed the selection.
    hists["CvsL_CvsB"].fill(dataset="d", selection="light", channel="mm", model="stored", flavour="data", osss=1,
                            systematic="nominal", CvsL=[0.5], CvsB=[0.5], weight=[0.0])
    summary = derive_scale_factors({"hists": hists}, tmp_path, config=ScaleFactorConfig(n_toys=2, plots=False))
    assert summary["models"] == {}
    assert "stored" in summary["skipped"]
    assert "CvsL_CvsB" in summary["skipped"]["stored"]
    assert "stored" in summary["no_payload"]
    assert not (tmp_path / "sf_stored.json.gz").exists()


def test_output_files_get_open_mode(tmp_path):
    result = toy_result(ToySample(n_data=3000))
    summary = derive_scale_factors(result, tmp_path, config=ScaleFactorConfig(n_toys=2, plots=False))
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    for name in ("sf_toy.json.gz", "diagnostics.json", "closure.json"):
        assert str(tmp_path / name) in summary["files"]
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
