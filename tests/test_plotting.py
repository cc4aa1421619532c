"""Data/MC plots: files written for a tiny run, legend content, no global style change, ``advcalib plot``."""

from __future__ import annotations

import json
import logging

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from advcalib.cli import main
from advcalib.histograms import make_histograms
from advcalib.outputs import region_shapes
from advcalib.plotting import draw_comparison, plot_all


def tiny_result():
    """Fill light-selection BvsL and CvsL for two models, leaving the other selections empty."""
    rng = np.random.default_rng(7)
    hists = make_histograms()
    for model in ("nominal", "adversarial"):
        for name in ("BvsL", "CvsL"):
            for flavour, shape in (("b", (5, 2)), ("c", (3, 3)), ("light", (2, 5)), ("data", (2, 2))):
                for osss, count in ((1, 200), (-1, 40)):
                    hists[name].fill(
                        dataset="d", selection="light", channel="mm", model=model, flavour=flavour, osss=osss,
                        systematic="nominal", **{name: rng.beta(*shape, count)}, weight=1.0 if flavour == "data" else 0.4,
                    )
    return {"hists": hists, "models": {"nominal": "nominal", "adversarial": "adversarial"}, "lumi": 59830.0}


def jsd_stub_table():
    cell = {"jsd": 0.0123, "unc": 0.0011}
    return {model: {"light": {"BvsL": cell, "CvsL": cell}} for model in ("nominal", "adversarial")}


def test_plot_all_writes_files(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="advcalib.plotting"):
        paths = plot_all(tiny_result(), tmp_path, jsd_stub_table(), selections=("light", "charm"), discriminators=("BvsL",))
    names = sorted(path.name for path in paths)
    assert names == sorted(
        f"light_BvsL_{model}.{extension}" for model in ("nominal", "adversarial", "models") for extension in ("png", "pdf")
    )
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert path.stat().st_size > 1000
    assert (tmp_path / "plots" / "light_BvsL_models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "plots" / "light_BvsL_models.pdf").read_bytes()[:5] == b"%PDF-"
    assert "no plot for 2 regions" in caplog.text


def test_plot_all_computes_jsd_when_missing(tmp_path):
    paths = plot_all(tiny_result(), tmp_path, selections=("light",), discriminators=("CvsL",), models=("nominal",), formats=("png",))
    assert [path.name for path in paths] == ["light_CvsL_nominal.png"]


def test_plot_all_leaves_global_style(tmp_path):
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    plot_all(tiny_result(), tmp_path, jsd_stub_table(), selections=("light",), discriminators=("BvsL",),
             models=("nominal",), formats=("png",))
    assert matplotlib.get_backend() == backend
    assert {key: value for key, value in matplotlib.rcParams.items() if before[key] != value} == {}


def test_draw_comparison_legend_and_ratio():
    shapes = region_shapes(tiny_result(), "BvsL", selection="light", model="nominal")
    figure = Figure()
    FigureCanvasAgg(figure)
    ax, ratio_ax = figure.subplots(2, 1)
    draw_comparison(ax, ratio_ax, shapes, discriminator="BvsL", title="light selection, nominal", jsd_text="0.0123 ± 0.0011")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0] == "Data"
    assert "JSD = 0.0123 ± 0.0011" in labels
    assert {"b jets", "c jets", "light jets", "MC stat. unc."} <= set(labels)

    mc = sum(shapes[flavour][0] for flavour in ("b", "c", "light"))
    (points,) = [line for line in ratio_ax.get_lines() if line.get_marker() == "o"]
    expected = np.divide(shapes["data"][0], mc, out=np.full_like(mc, np.nan), where=mc > 0)
    np.testing.assert_allclose(points.get_ydata(), expected)


def test_cli_plot(tmp_path, capsys):
    from coffea.util import save

    save(tiny_result(), tmp_path / "hists.coffea")
    jsd_path = tmp_path / "jsd.json"
    jsd_path.write_text(json.dumps(jsd_stub_table()))
    out = tmp_path / "out"
    arguments = ["plot", str(tmp_path / "hists.coffea"), "--out", str(out), "--jsd", str(jsd_path),
                 "--selection", "light", "--discriminator", "BvsL", "--model", "nominal", "--format", "png"]
    assert main(arguments) == 0
    assert "wrote 1 files" in capsys.readouterr().out
    assert (out / "plots" / "light_BvsL_nominal.png").stat().st_size > 1000
    assert main(arguments) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*arguments, "--force"]) == 0


def test_cli_plot_rejects_bad_jsd_file(tmp_path, capsys):
    from coffea.util import save

    save(tiny_result(), tmp_path / "hists.coffea")
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["plot", str(tmp_path / "hists.coffea"), "--out", str(tmp_path / "out"), "--jsd", str(tmp_path / "bad.json")]) == 1
    assert "cannot read --jsd" in capsys.readouterr().err
