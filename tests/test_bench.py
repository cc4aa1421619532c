"""Benchmark code: FLOP counts, stage timing, targets, bench.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advcalib.bench import BenchConfig, run_benchmarks
from advcalib.bench.report import evaluate_targets
from advcalib.bench.roofline import deepjet_flops
from advcalib.bench.stages import StageClock
from advcalib.models import DeepJet

from conftest import CMS_MODELS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_deepjet_flops_by_hand():
    flops = deepjet_flops(DeepJet())
    # 1x1 convolutions: 25 charged, 25 neutral and 4 vertex slots, 2 FLOPs per multiply-add.
    assert flops["conv"] == 2 * (25 * (16 * 64 + 64 * 32 + 32 * 32 + 32 * 8) + 25 * (6 * 32 + 32 * 16 + 16 * 4)
                                 + 4 * (12 * 64 + 64 * 32 + 32 * 32 + 32 * 8))
    # Four gates, input and recurrent products, every slot.
    assert flops["lstm"] == 8 * (150 * (8 + 150) * 25 + 50 * (4 + 50) * 25 + 50 * (8 + 50) * 4)
    assert flops["dense"] == 2 * (265 * 200 + 200 * 100 + 6 * 100 * 100 + 100 * 6)
    assert flops["total"] == 5_928_768


def test_stage_clock_charges_innermost_stage(monkeypatch):
    ticks = iter([0.0, 1.0, 3.0, 6.0])  # enter outer, enter inner, exit inner, exit outer
    monkeypatch.setattr("advcalib.bench.stages.time.perf_counter", lambda: next(ticks))
    clock = StageClock()
    clock.enter("select")
    clock.enter("read")
    clock.exit()
    clock.exit()
    assert clock.seconds["select"] == pytest.approx(1.0 + 3.0)
    assert clock.seconds["read"] == pytest.approx(2.0)


def test_targets_from_hand_built_sections():
    sections = {
        "inference": {"rows": [
            {"variant": "torch-eager", "threads": 1, "batch_size": 4096, "jets_per_s": 3000.0},
            {"variant": "torch-fast", "threads": 1, "batch_size": 4096, "jets_per_s": 6000.0},
            {"variant": "onnxruntime-Run3", "threads": 1, "batch_size": 4096, "jets_per_s": 2000.0},
        ]},
        "roofline": {"matmul_flops_per_s": {"1": 6000.0 * 5_928_768 / 0.5}, "deepjet_flops_per_jet": {"total": 5_928_768}},
        "processor": {"rows": [
            {"configuration": "no model", "events_per_s": 1000.0},
            {"configuration": "two models", "events_per_s": 250.0},
        ]},
        "inputs": {"rows": [{"source": "pfcands", "jets_per_s": 15000.0}]},
        "training": {"ratio": 2.0, "jets": 10, "batch_size": 2, "threads": 1},
        "scaling": {"speedup_2_workers": 1.8, "memory": [{"files": 1, "peak_rss_mb": 400.0}, {"files": 8, "peak_rss_mb": 480.0}]},
    }
    targets = {t["target"]: t for t in evaluate_targets(sections)}
    assert targets["torch / onnxruntime Run3"]["value"] == pytest.approx(3.0)
    assert targets["torch / onnxruntime Run3"]["met"] is True
    assert targets["fraction of matmul roofline (executed FLOPs)"]["value"] == pytest.approx(0.5)
    assert targets["fraction of matmul roofline (executed FLOPs)"]["met"] is False
    assert targets["fraction of matmul roofline (dense FLOPs)"]["met"] is None
    assert targets["processor two models / no model"]["value"] == pytest.approx(0.25)
    assert targets["processor two models / no model"]["met"] is False
    # Against torch-fast, what Tagger.predict runs: 6000 / 15000.
    assert targets["input building (pfcands) / inference time"]["value"] == pytest.approx(0.4)
    assert targets["adversarial / nominal epoch time"]["met"] is True
    assert targets["Dask 2 workers / 1 worker"]["met"] is True
    assert targets["worker memory growth with files"]["value"] == pytest.approx(0.2)
    assert targets["worker memory growth with files"]["met"] is False


def test_quick_bench_json_structure(tmp_path):
    cms_models = CMS_MODELS if CMS_MODELS.is_dir() else None
    config = BenchConfig.quick(tmp_path, threads=1, cms_models=cms_models, sections=("roofline", "inference", "training"))
    run_benchmarks(config)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report) >= {"machine", "config", "sections", "targets", "total_wall_s"}
    assert report["machine"]["device"] == "cpu"
    sections = report["sections"]
    assert list(sections) == ["roofline", "inference", "training"]
    assert all("error" not in section for section in sections.values()), sections
    assert sections["roofline"]["deepjet_flops_per_jet"]["total"] == 5_928_768
    assert sections["roofline"]["matmul_flops_per_s"]["1"] > 0
    variants = {row["variant"] for row in sections["inference"]["rows"]}
    assert {"torch-eager", "torch-trace", "torch-script", "torch-folded", "torch-bucketed", "torch-fast"} <= variants
    assert all(row["jets_per_s"] > 0 and row["threads"] == 1 for row in sections["inference"]["rows"])
    if cms_models is not None:
        assert {"onnxruntime-Run3", "onnxruntime-Run2"} <= variants
        differences = sections["inference"]["max_abs_difference_to_onnxruntime_Run3"]
        assert max(differences.values()) < 1e-3
    assert sections["training"]["ratio"] > 0
    assert "torch / onnxruntime Run3" in {t["target"] for t in report["targets"]} or cms_models is None
    assert "| variant | threads | batch | jets/s |" in (tmp_path / "bench.md").read_text()
