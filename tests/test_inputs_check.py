"""``advcalib inputs check`` on the real PFNano file with the Run 2 DeepJet network."""

from __future__ import annotations

import argparse
import json

import pytest

from advcalib.cli import inputs as inputs_cli

#: Level reached on the PFNano test file with DeepFlavourV03_10X (64 jets): measured
#: r = 0.9987 / 0.9997 / 0.9987 and median |diff| = 1.2e-4 / 1.7e-4 / 3.5e-4 for
#: BvsAll / CvsL / CvsB; the requirement is r >= 0.998 and median |diff| <= 0.001.
MIN_PEARSON_R = 0.998
MAX_MEDIAN_ABS_DIFF = 0.001


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="advcalib")
    inputs_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


_CACHE: dict[str, tuple] = {}


@pytest.fixture
def check_result(real_pfnano, onnx_run2, tmp_path_factory, capsys):
    if "result" not in _CACHE:
        out = tmp_path_factory.mktemp("check") / "check.json"
        code = _run(["inputs", "check", "--model", str(onnx_run2), str(real_pfnano), "--json", str(out)])
        _CACHE["result"] = (code, json.loads(out.read_text()), capsys.readouterr().out)
    return _CACHE["result"]


def test_check_json_keys(check_result):
    code, result, _ = check_result
    assert code == 0
    assert set(result) == {"BvsAll", "CvsL", "CvsB"}
    for numbers in result.values():
        assert set(numbers) == {"pearson_r", "median_abs_diff", "p95_abs_diff", "n_jets"}
        assert numbers["n_jets"] == 64


def test_check_reaches_target(check_result):
    _, result, printed = check_result
    for name, numbers in result.items():
        assert numbers["pearson_r"] >= MIN_PEARSON_R, f"{name}: {numbers}"
        assert numbers["median_abs_diff"] <= MAX_MEDIAN_ABS_DIFF, f"{name}: {numbers}"
        assert name in printed


def test_check_missing_file(onnx_run2, tmp_path, capsys):
    code = _run(["inputs", "check", "--model", str(onnx_run2), str(tmp_path / "absent.root")])
    assert code == 2
    assert "not found" in capsys.readouterr().out
