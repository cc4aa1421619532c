"""Working-point efficiencies on hand-built histograms, efficiency.csv and ``advcalib efficiency``."""

from __future__ import annotations

import csv
import logging
import math
import os
import stat

import numpy as np
import pytest

from advcalib.cli import main
from advcalib.efficiency import (
    WORKING_POINTS,
    EfficiencyRow,
    effective_cuts,
    efficiency,
    efficiency_table,
    nearest_edge,
    ratio,
    write_efficiency,
)
from advcalib.histograms import SELECTIONS, discriminator_axis, make_histograms
from advcalib.outputs import write_csv_atomic, write_json_atomic, write_text_atomic


def fill(histograms, name, *, flavour, osss, selection, weight=1.0, model="nominal", **values):
    count = len(next(iter(values.values())))
    histograms[name].fill(
        dataset="d", selection=selection, channel="m", model=model, flavour=flavour, osss=osss,
        systematic="nominal", weight=np.full(count, weight), **{axis: np.asarray(v, dtype=float) for axis, v in values.items()},
    )


def hand_built_result():
    hists = make_histograms()
    # light/BvsL: data OS-SS passes 4 - 2 = 2 and fails 6. MC passes 3 x 2 (b) and fails 10 (light).
    fill(hists, "BvsL", flavour="data", osss=1, selection="light", BvsL=[0.1] * 6 + [0.8] * 4)
    fill(hists, "BvsL", flavour="data", osss=-1, selection="light", BvsL=[0.8] * 2)
    fill(hists, "BvsL", flavour="b", osss=1, selection="light", weight=2.0, BvsL=[0.9] * 3)
    fill(hists, "BvsL", flavour="light", osss=1, selection="light", BvsL=[0.1] * 10)
    # charm/CvsL_CvsB: four jets, each passing a different set of c-tag working points.
    points = {"CvsL": [0.2, 0.5, 0.04, 0.9], "CvsB": [0.4, 0.27, 0.9, 0.1]}
    fill(hists, "CvsL_CvsB", flavour="data", osss=1, selection="charm", **points)
    fill(hists, "CvsL_CvsB", flavour="c", osss=1, selection="charm", weight=0.5, **points)
    # bottom/BvsAll: pt and |eta| are summed with their flow bins. -1 (underflow) fails, 1.0 (overflow) passes.
    jets = {"pt": [25.0, 500.0, 1500.0, 40.0], "abseta": [0.5, 2.0, 1.0, 0.3], "BvsAll": [0.8, 0.1, 1.0, -1.0]}
    fill(hists, "BvsAll", flavour="data", osss=1, selection="bottom", **jets)
    fill(hists, "BvsAll", flavour="b", osss=1, selection="bottom", **jets)
    return {"hists": hists, "models": {"nominal": "nominal"}, "lumi": 1.0}


def find(rows, selection, working_point, model="nominal") -> EfficiencyRow:
    (row,) = [r for r in rows if (r.selection, r.model, r.working_point) == (selection, model, working_point)]
    return row


@pytest.fixture(scope="module")
def rows():
    return efficiency_table(hand_built_result())


def test_nearest_edge_rounding():
    edges = discriminator_axis("CvsB").edges
    assert edges[nearest_edge(edges, 0.2783)] == pytest.approx(0.30)
    assert edges[nearest_edge(edges, 0.049)] == pytest.approx(0.05)
    assert edges[nearest_edge(edges, 0.71)] == pytest.approx(0.70)
    # 0.325 lies halfway between 0.30 and 0.35: the tie goes to the lower edge.
    assert edges[nearest_edge(edges, 0.325)] == pytest.approx(0.30)


def test_working_point_table():
    names = [point.name for point in WORKING_POINTS]
    assert len(names) == len(set(names))
    thresholds = {point.name: dict(point.cuts) for point in WORKING_POINTS}
    assert thresholds["BvsAll_M"] == {"BvsAll": 0.2783}
    assert thresholds["ctag_T"] == {"CvsL": 0.282, "CvsB": 0.267}
    assert "CvsB_T" not in thresholds
    ctag_m = next(point for point in WORKING_POINTS if point.name == "ctag_M")
    assert dict(effective_cuts(ctag_m)) == pytest.approx({"CvsL": 0.10, "CvsB": 0.30})


def test_efficiency_binomial_limit():
    # Unit weights: the propagated uncertainty equals the binomial sqrt(eff (1 - eff) / N).
    value, uncertainty = efficiency(3.0, 3.0, 1.0, 1.0)
    assert value == 0.75
    assert uncertainty == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert all(math.isnan(x) for x in efficiency(0.0, 0.0, 0.0, 0.0))
    assert all(math.isnan(x) for x in efficiency(1.0, 1.0, -2.0, 2.0))


def test_ratio_uncertainty():
    value, uncertainty = ratio(0.5, 0.05, 0.25, 0.025)
    assert value == 2.0
    assert uncertainty == pytest.approx(2.0 * math.hypot(0.1, 0.1))
    assert all(math.isnan(x) for x in ratio(0.5, 0.1, 0.0, 0.1))


def test_one_dimensional_working_point(rows):
    row = find(rows, "light", "BvsL_M")
    assert row.threshold == "BvsL>=0.2783"
    assert row.effective_threshold == "BvsL>=0.3"
    assert row.data_eff == pytest.approx(0.25)
    # pass 2 (variance 4 + 2), fail 6 (variance 6)
    assert row.data_unc == pytest.approx(math.sqrt((36 * 6 + 4 * 6) / 8**4))
    assert row.mc_eff == pytest.approx(0.375)
    # pass 6 (variance 3 x 4), fail 10 (variance 10)
    assert row.mc_unc == pytest.approx(math.sqrt((100 * 12 + 36 * 10) / 16**4))
    assert row.ratio == pytest.approx(0.25 / 0.375)
    assert row.ratio_unc == pytest.approx(row.ratio * math.hypot(row.data_unc / 0.25, row.mc_unc / 0.375))
    assert row.mc_eff_b == 1.0
    assert row.mc_eff_light == 0.0
    assert math.isnan(row.mc_eff_c)
    assert find(rows, "light", "BvsL_L").data_eff == pytest.approx(1.0)


@pytest.mark.parametrize(("working_point", "expected"), [("ctag_L", 0.5), ("ctag_M", 0.25), ("ctag_T", 0.25)])
def test_ctag_working_points_on_2d(rows, working_point, expected):
    row = find(rows, "charm", working_point)
    assert row.histogram == "CvsL_CvsB"
    assert row.data_eff == pytest.approx(expected)
    assert row.mc_eff == pytest.approx(expected)
    assert row.mc_eff_c == pytest.approx(expected)
    assert row.ratio == pytest.approx(1.0)


@pytest.mark.parametrize(("working_point", "expected"), [("BvsAll_L", 0.75), ("BvsAll_M", 0.5), ("BvsAll_T", 0.5)])
def test_bvsall_sums_pt_and_eta(rows, working_point, expected):
    row = find(rows, "bottom", working_point)
    assert row.data_eff == pytest.approx(expected)
    assert row.mc_eff_b == pytest.approx(expected)


def test_cut_sits_on_effective_edge():
    hists = make_histograms()
    # 0.29 is above the nominal BvsL_M threshold 0.2783 but below the effective 0.30.
    fill(hists, "BvsL", flavour="data", osss=1, selection="light", BvsL=[0.29, 0.31])
    fill(hists, "BvsL", flavour="light", osss=1, selection="light", BvsL=[0.29, 0.31])
    row = find(efficiency_table({"hists": hists}), "light", "BvsL_M")
    assert row.data_eff == pytest.approx(0.5)


def test_missing_regions_are_nan(rows, caplog):
    row = find(rows, "light", "ctag_M")
    assert math.isnan(row.data_eff)
    assert math.isnan(row.ratio)
    assert row.effective_threshold == "CvsL>=0.1 & CvsB>=0.3"
    with caplog.at_level(logging.WARNING, logger="advcalib.efficiency"):
        efficiency_table(hand_built_result())
    assert "efficiency is NaN for" in caplog.text
    assert len(rows) == len(SELECTIONS) * len(WORKING_POINTS)


def test_write_efficiency_csv(rows, tmp_path):
    path = write_efficiency(rows, tmp_path)
    assert path == tmp_path / "efficiency.csv"
    with path.open() as handle:
        stored = list(csv.DictReader(handle))
    assert len(stored) == len(rows)
    light_medium = next(r for r in stored if r["selection"] == "light" and r["working_point"] == "BvsL_M")
    assert float(light_medium["data_eff"]) == pytest.approx(0.25)
    assert light_medium["effective_threshold"] == "BvsL>=0.3"
    assert light_medium["mc_eff_c"] == "nan"


def test_cli_efficiency(tmp_path, capsys):
    from coffea.util import save

    save(hand_built_result(), tmp_path / "hists.coffea")
    out = tmp_path / "out"
    assert main(["efficiency", str(tmp_path / "hists.coffea"), "--out", str(out)]) == 0
    assert "efficiency.csv" in capsys.readouterr().out
    with (out / "efficiency.csv").open() as handle:
        stored = list(csv.DictReader(handle))
    assert float(next(r for r in stored if r["working_point"] == "ctag_L" and r["selection"] == "charm")["data_eff"]) == 0.5
    assert main(["efficiency", str(tmp_path / "hists.coffea"), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def negative_yield_result():
    hists = make_histograms()
    # light/BvsL: c jets pass 1 OS - 3 SS = -2 and fail 5, so P/(P+F) would be -2/3.
    fill(hists, "BvsL", flavour="data", osss=1, selection="light", BvsL=[0.1] * 8 + [0.8] * 2)
    fill(hists, "BvsL", flavour="light", osss=1, selection="light", BvsL=[0.1] * 8)
    fill(hists, "BvsL", flavour="c", osss=1, selection="light", BvsL=[0.1] * 5 + [0.8])
    fill(hists, "BvsL", flavour="c", osss=-1, selection="light", BvsL=[0.8] * 3)
    fill(hists, "BvsL", flavour="b", osss=1, selection="light", BvsL=[0.9] * 4)
    return {"hists": hists, "models": {"nominal": "nominal"}, "lumi": 1.0}


def test_negative_yield_gives_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="advcalib.efficiency"):
        rows = efficiency_table(negative_yield_result())
    row = find(rows, "light", "BvsL_M")
    assert math.isnan(row.mc_eff_c)
    # MC in total: pass 4 - 2 = 2, fail 13, both positive.
    assert row.mc_eff == pytest.approx(2 / 15)
    assert row.mc_eff_b == 1.0
    assert row.data_eff == pytest.approx(0.2)
    assert row.ratio == pytest.approx(0.2 / (2 / 15))
    negative = [r for r in caplog.records if "negative" in r.getMessage()]
    assert len(negative) == 1
    assert "nominal/light/BvsL_M (mc_eff_c)" in negative[0].getMessage()


def test_negative_mc_total_makes_ratio_nan():
    hists = make_histograms()
    fill(hists, "BvsL", flavour="data", osss=1, selection="light", BvsL=[0.1] * 8 + [0.8] * 2)
    fill(hists, "BvsL", flavour="light", osss=1, selection="light", BvsL=[0.1] * 8)
    fill(hists, "BvsL", flavour="light", osss=-1, selection="light", BvsL=[0.8] * 2)
    row = find(efficiency_table({"hists": hists}), "light", "BvsL_M")
    assert row.data_eff == pytest.approx(0.2)
    assert math.isnan(row.mc_eff)
    assert math.isnan(row.ratio)
    assert math.isnan(row.ratio_unc)


def test_efficiency_rejects_negative_parts():
    assert all(math.isnan(x) for x in efficiency(-2.0, 4.0, 5.0, 5.0))
    assert all(math.isnan(x) for x in efficiency(3.0, 3.0, -1.0, 1.0))
    assert efficiency(0.0, 0.0, 5.0, 5.0)[0] == 0.0


def test_efficiency_csv_gets_open_mode(rows, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_efficiency(rows, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda path: write_text_atomic(path, "x\n"), id="text"),
        pytest.param(lambda path: write_json_atomic(path, {"jsd": math.nan}), id="json"),
        pytest.param(lambda path: write_csv_atomic(path, ["a"], [[1.0]]), id="csv"),
    ],
)
def test_output_writers_get_open_mode(tmp_path, write):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write(tmp_path / "table")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["table"]


def test_json_writer_stores_nan_as_null(tmp_path):
    path = write_json_atomic(tmp_path / "table.json", {"jsd": math.nan, "unc": [1.0, math.inf]})
    assert path.read_text() == '{\n  "jsd": null,\n  "unc": [\n    1.0,\n    null\n  ]\n}\n'
