"""Jensen-Shannon divergence: hand-computed values, properties, bootstrap, the JSD table and ``advcalib jsd``."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

from advcalib.cli import main
from advcalib.divergence import (
    format_markdown,
    jsd,
    jsd_table,
    jsd_with_uncertainty,
    read_jsd_json,
    write_jsd_table,
)
from advcalib.histograms import DISCRIMINATORS, SELECTIONS, make_histograms

LN2 = math.log(2.0)


def fill(histograms, name, values, *, flavour, osss, weight=1.0, dataset="d", channel="mm",
         selection="light", model="nominal", systematic="nominal"):
    histograms[name].fill(
        dataset=dataset, selection=selection, channel=channel, model=model, flavour=flavour, osss=osss,
        systematic=systematic, **{name: np.asarray(values, dtype=float)}, weight=weight,
    )


def hand_filled_result():
    """Fill light/BvsL of model "nominal" with data OS-SS 2, -1, 1 and MC 2, 5, 2 in bins 0, 10, 19.

    Bin 10 is negative in data, so it is dropped on both sides and the JSD is that of
    (2, 1) against (2, 2). Data is split over two datasets and two channels, the data
    entry in bin 19 sits at exactly 1.0 (overflow), and a "jesUp" systematic must be ignored.
    """
    hists = make_histograms()
    fill(hists, "BvsL", [0.025, 0.025], flavour="data", osss=1, dataset="data_a", channel="mm", weight=1.5)
    fill(hists, "BvsL", [0.025], flavour="data", osss=-1, dataset="data_b", channel="ee")
    fill(hists, "BvsL", [0.525], flavour="data", osss=-1, dataset="data_a", channel="ee")
    fill(hists, "BvsL", [1.0], flavour="data", osss=1, dataset="data_b", channel="mm")
    fill(hists, "BvsL", [0.975], flavour="b", osss=1, dataset="tt", weight=2.0)
    fill(hists, "BvsL", [0.025], flavour="light", osss=1, dataset="dy", weight=2.0)
    fill(hists, "BvsL", [0.525], flavour="c", osss=1, dataset="dy", weight=5.0)
    fill(hists, "BvsL", [0.5] * 10, flavour="data", osss=1, systematic="jesUp")
    # A second model filled only in the charm selection, so most of its cells are empty.
    fill(hists, "CvsL", [0.3, 0.6], flavour="data", osss=1, selection="charm", model="adversarial")
    fill(hists, "CvsL", [0.3, 0.7], flavour="c", osss=1, selection="charm", model="adversarial")
    return {"hists": hists, "models": {"nominal": "nominal"}, "lumi": 1000.0}


# --- jsd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p", [np.array([1.0, 2.0, 3.0]), np.array([0.0, 5.0, 0.0, 1.0]), np.full(20, 0.05)], ids=["ramp", "sparse", "flat"]
)
def test_jsd_identical_is_zero(p):
    assert jsd(p, p) == 0.0
    assert jsd(p, 7.0 * p) == pytest.approx(0.0, abs=1e-15)


def test_jsd_symmetric():
    p, q = np.array([1.0, 4.0, 2.0]), np.array([3.0, 1.0, 1.0])
    assert jsd(p, q) == pytest.approx(jsd(q, p), rel=1e-14)


def test_jsd_matches_scipy_square():
    p, q = np.array([1.0, 2.0, 3.0, 0.5]), np.array([3.0, 2.0, 1.0, 0.0])
    assert jsd(p, q) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-12)


def test_jsd_hand_computed():
    # P = (1/2, 1/2), Q = (1/4, 3/4), M = (3/8, 5/8)
    expected = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)) + 0.5 * (
        0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)
    )
    assert jsd([1.0, 1.0], [1.0, 3.0]) == pytest.approx(expected, rel=1e-12)


def test_jsd_negative_bins_excluded():
    # Bin 1 is negative in P: left with (1, 1) against (1, 3) after dropping it from both.
    assert jsd([1.0, -1.0, 1.0], [1.0, 1.0, 3.0]) == pytest.approx(jsd([1.0, 1.0], [1.0, 3.0]), rel=1e-12)
    # Dropping bin 2 leaves P = (1, 3, 4) and Q = (2, 6, 8): the same shape.
    assert jsd([1.0, 3.0, -2.0, 4.0], [2.0, 6.0, 1.0, 8.0]) == pytest.approx(0.0, abs=1e-15)
    # Dropping bin 1 (negative in P) leaves shapes without common bins.
    assert jsd([2.0, -1.0, 0.0], [0.0, 5.0, 2.0]) == pytest.approx(LN2, rel=1e-12)
    # A negative bin in Q is dropped from P as well.
    assert jsd([1.0, 9.0, 1.0], [1.0, -0.5, 3.0]) == pytest.approx(jsd([1.0, 1.0], [1.0, 3.0]), rel=1e-12)


def test_jsd_disjoint_is_ln2():
    assert jsd([3.0, 0.0, 0.0], [0.0, 1.0, 2.0]) == pytest.approx(LN2, rel=1e-12)


@pytest.mark.parametrize(
    ("p", "q"),
    [([0.0, 0.0], [1.0, 1.0]), ([1.0, 1.0], [0.0, 0.0]), ([-1.0, -2.0], [1.0, 1.0]), ([1.0, 0.0], [-1.0, 2.0])],
    ids=["p-empty", "q-empty", "p-negative", "nothing-left"],
)
def test_jsd_empty_is_nan(p, q):
    assert math.isnan(jsd(p, q))


def test_jsd_rejects_bad_input():
    with pytest.raises(ValueError, match="equal shape"):
        jsd([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        jsd([1.0, math.nan], [1.0, 2.0])


def test_jsd_batched_rows():
    p = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.0]])
    q = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 5.0, 2.0]])
    rows = jsd(p, q)
    assert rows.shape == (3,)
    assert rows[0] == pytest.approx(jsd(p[0], q[0]))
    assert math.isnan(rows[1])
    assert rows[2] == pytest.approx(LN2)


# Bin contents are 0 or between 1e-6 and 1e6, a range wider than any weighted histogram.
# Near 1e-300 scipy's jensenshannon, the reference below, underflows and returns NaN.
bin_contents = st.one_of(st.just(0.0), st.floats(1e-6, 1e6))
histogram_pairs = st.integers(min_value=1, max_value=30).flatmap(
    lambda bins: st.tuples(arrays(np.float64, bins, elements=bin_contents), arrays(np.float64, bins, elements=bin_contents))
)


@settings(max_examples=200, deadline=None)
@given(histogram_pairs)
def test_jsd_properties_on_random_histograms(pair):
    p, q = pair
    value = jsd(p, q)
    if p.sum() == 0 or q.sum() == 0:
        assert math.isnan(value)
        return
    assert 0.0 <= value <= LN2
    assert value == pytest.approx(jsd(q, p), rel=1e-9, abs=1e-15)
    assert value == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-6, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(histogram_pairs, st.floats(1e-3, 1e3))
def test_jsd_scale_invariant(pair, scale):
    p, q = pair
    if p.sum() == 0 or q.sum() == 0:
        return
    assert jsd(scale * p, q) == pytest.approx(jsd(p, q), rel=1e-6, abs=1e-12)


# --- bootstrap ------------------------------------------------------------------------------


P_SHAPE = np.array([5.0, 10.0, 20.0, 30.0, 20.0, 10.0, 5.0])
Q_SHAPE = np.array([6.0, 12.0, 22.0, 26.0, 18.0, 11.0, 5.0])


@pytest.mark.parametrize("method", ["gaussian", "poisson"])
def test_bootstrap_uncertainty_shrinks_with_statistics(method):
    uncertainties = []
    for events in (100.0, 10_000.0):
        p, q = P_SHAPE * events, Q_SHAPE * events
        _, uncertainty = jsd_with_uncertainty(p, q, p_variance=p, q_variance=q, toys=400, seed=3, method=method)
        uncertainties.append(uncertainty)
    assert uncertainties[0] > 0
    # 100 times the statistics: the spread falls by about a factor 10 (sqrt(100)).
    assert uncertainties[1] < uncertainties[0] / 5


def test_bootstrap_matches_sampling_spread():
    # The bootstrap spread from one observed pair estimates the spread of the JSD over
    # repeated experiments drawn from the true shapes.
    rng = np.random.default_rng(11)
    p_true, q_true = P_SHAPE * 50, Q_SHAPE * 50
    experiments = [jsd(rng.poisson(p_true), rng.poisson(q_true)) for _ in range(400)]
    p_observed, q_observed = rng.poisson(p_true).astype(float), rng.poisson(q_true).astype(float)
    _, uncertainty = jsd_with_uncertainty(
        p_observed, q_observed, p_variance=p_observed, q_variance=q_observed, toys=400, seed=5, method="poisson"
    )
    assert uncertainty == pytest.approx(np.std(experiments), rel=0.5)


def test_bootstrap_seeded_and_central_value():
    p, q = P_SHAPE * 10, Q_SHAPE * 10
    first = jsd_with_uncertainty(p, q, p_variance=p, q_variance=q, toys=50, seed=1)
    second = jsd_with_uncertainty(p, q, p_variance=p, q_variance=q, toys=50, seed=1)
    other = jsd_with_uncertainty(p, q, p_variance=p, q_variance=q, toys=50, seed=2)
    assert first == second
    assert first[1] != other[1]
    assert first[0] == jsd(p, q)


def test_bootstrap_empty_and_invalid():
    value, uncertainty = jsd_with_uncertainty([0.0, 0.0], [1.0, 2.0], p_variance=[0.0, 0.0], q_variance=[1.0, 2.0])
    assert math.isnan(value)
    assert math.isnan(uncertainty)
    with pytest.raises(ValueError, match="toys=1"):
        jsd_with_uncertainty([1.0], [1.0], p_variance=[1.0], q_variance=[1.0], toys=1)
    with pytest.raises(ValueError, match="resampling method"):
        jsd_with_uncertainty([1.0], [1.0], p_variance=[1.0], q_variance=[1.0], method="uniform")
    with pytest.raises(ValueError, match="non-negative"):
        jsd_with_uncertainty([1.0, 2.0], [1.0, 1.0], p_variance=[-1.0, 1.0], q_variance=[1.0, 1.0])


# --- table --------------------------------------------------------------------------------


def test_jsd_table_values_and_columns(caplog):
    with caplog.at_level(logging.WARNING, logger="advcalib.divergence"):
        table = jsd_table(hand_filled_result(), toys=50, seed=0)
    assert list(table) == ["nominal", "adversarial"]
    for model in table:
        assert list(table[model]) == list(SELECTIONS)
        for selection in SELECTIONS:
            assert list(table[model][selection]) == list(DISCRIMINATORS)

    cell = table["nominal"]["light"]["BvsL"]
    assert cell["jsd"] == pytest.approx(jensenshannon([2.0, 1.0], [2.0, 2.0]) ** 2, rel=1e-12)
    assert cell["unc"] > 0
    assert table["adversarial"]["charm"]["CvsL"]["jsd"] == pytest.approx(jensenshannon([1, 1, 0], [1, 0, 1]) ** 2)
    assert math.isnan(table["nominal"]["charm"]["BvsL"]["jsd"])
    assert math.isnan(table["nominal"]["light"]["CvsB"]["unc"])
    assert "JSD is NaN for 16 cells" in caplog.text


def test_jsd_table_cell_seed_independent_of_other_models():
    result = hand_filled_result()
    full = jsd_table(result, toys=30, seed=4)
    result["hists"]["CvsL"].reset()
    reduced = jsd_table(result, toys=30, seed=4)
    assert reduced["nominal"]["light"]["BvsL"] == full["nominal"]["light"]["BvsL"]


def test_write_jsd_table_formats(tmp_path):
    table = jsd_table(hand_filled_result(), toys=30, seed=0)
    paths = write_jsd_table(table, tmp_path)
    assert sorted(path.name for path in paths) == ["jsd.csv", "jsd.json", "jsd.md"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["jsd.csv", "jsd.json", "jsd.md"]

    with (tmp_path / "jsd.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["nominal", "adversarial"]
    assert len(rows[0]) == 1 + 2 * 9
    assert float(rows[0]["light_BvsL"]) == table["nominal"]["light"]["BvsL"]["jsd"]
    assert float(rows[0]["light_BvsL_unc"]) == table["nominal"]["light"]["BvsL"]["unc"]
    assert rows[0]["bottom_CvsL"] == "nan"

    stored = json.loads((tmp_path / "jsd.json").read_text())
    assert stored["nominal"]["bottom"]["CvsL"] == {"jsd": None, "unc": None}
    assert stored["nominal"]["light"]["BvsL"]["jsd"] == table["nominal"]["light"]["BvsL"]["jsd"]
    restored = read_jsd_json(tmp_path / "jsd.json")
    assert restored["nominal"]["light"]["BvsL"] == table["nominal"]["light"]["BvsL"]
    assert math.isnan(restored["nominal"]["bottom"]["CvsL"]["jsd"])

    markdown = (tmp_path / "jsd.md").read_text().splitlines()
    assert markdown[0].count("|") == 11
    assert markdown[2].startswith("| nominal | 0.0144 ± ")
    assert markdown[2].count("n/a") == 8
    assert (tmp_path / "jsd.md").read_text() == format_markdown(table)


def test_read_jsd_json_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"nominal": [1, 2]}))
    with pytest.raises(ValueError, match="not a JSD table"):
        read_jsd_json(path)


# --- command line ---------------------------------------------------------------------------


@pytest.fixture
def saved_result(tmp_path):
    from coffea.util import save

    path = tmp_path / "hists.coffea"
    save(hand_filled_result(), path)
    return path


def test_cli_jsd_writes_tables(saved_result, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["jsd", str(saved_result), "--out", str(out), "--toys", "20"]) == 0
    assert (out / "jsd.csv").stat().st_size > 0
    assert "| nominal | 0.0144 ± " in capsys.readouterr().out
    assert read_jsd_json(out / "jsd.json")["nominal"]["light"]["BvsL"]["jsd"] == pytest.approx(0.0143625915, rel=1e-8)


def test_cli_jsd_keeps_existing_outputs(saved_result, tmp_path, capsys):
    (tmp_path / "jsd.md").write_text("keep me\n")
    assert main(["jsd", str(saved_result), "--out", str(tmp_path), "--toys", "20"]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "jsd.md").read_text() == "keep me\n"
    assert main(["jsd", str(saved_result), "--out", str(tmp_path), "--toys", "20", "--force"]) == 0
    assert (tmp_path / "jsd.md").read_text().startswith("| model |")


def test_cli_jsd_bad_input(tmp_path, capsys):
    assert main(["jsd", str(tmp_path / "missing.coffea"), "--out", str(tmp_path)]) == 1
    assert "missing.coffea not found" in capsys.readouterr().err

    from coffea.util import save

    save({"cutflow": {}}, tmp_path / "other.coffea")
    assert main(["jsd", str(tmp_path / "other.coffea"), "--out", str(tmp_path)]) == 1
    assert "without a 'hists' dict" in capsys.readouterr().err
