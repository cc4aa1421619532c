"""``run_benchmarks``: run the chosen benchmark sections and write bench.json and bench.md."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advcalib.bench import inference, inputs, processor, roofline, samples, scaling, training
from advcalib.bench.config import BenchConfig
from advcalib.bench.report import evaluate_targets, markdown_report
from advcalib.bench.timing import all_threads, machine_info
from advcalib.models.device import resolve_device

logger = logging.getLogger(__name__)


class BenchState:
    """Results so far and the objects that later sections reuse (inputs, models, samples)."""

    def __init__(self, config: BenchConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.threads = config.threads or all_threads()
        self.results: dict[str, Any] = {}
        self.arrays: tuple[np.ndarray, ...] | None = None

    @property
    def thread_counts(self) -> tuple[int, ...]:
        return tuple(sorted({1, self.threads}))

    def jet_inputs(self) -> tuple[np.ndarray, ...]:
        """DeepJet inputs of the generated ttbar jets (built once, reused by later sections)."""
        if self.arrays is None:
            path = samples.ttbar_sample(self.config.out, events=self.config.input_events, seed=self.config.seed, deepjet_inputs=False)
            _, built = inputs.measure_input_building(path, source="pfcands", repeats=1)
            self.arrays = (*built.arrays(), built.jet_pt)
        return self.arrays


def section_roofline(state: BenchState) -> dict[str, Any]:
    config = state.config
    rates = {
        str(n): roofline.matmul_flops(size=config.matmul_size, n_threads=n, repeats=max(3, config.repeats), device=state.device)
        for n in state.thread_counts
    }
    from advcalib.models import DeepJet

    return {"matmul_size": config.matmul_size, "matmul_flops_per_s": rates, "deepjet_flops_per_jet": roofline.deepjet_flops(DeepJet())}


def section_inference(state: BenchState) -> dict[str, Any]:
    config = state.config
    networks = inference.find_networks(config.cms_models)
    model, weights = inference.load_torch_model(networks)
    arrays = state.jet_inputs()
    result = inference.measure_inference(
        inference.tile_inputs(arrays, max(config.inference_jets, max(config.batch_sizes))),
        model=model,
        networks=networks,
        batch_sizes=config.batch_sizes,
        thread_counts=state.thread_counts,
        repeats=config.repeats,
        device=state.device,
    )
    lengths = {name: inference.sequence_lengths(torch.from_numpy(a)).numpy() for name, a in zip(("cpf", "npf", "vtx"), arrays[1:4])}
    result |= {
        "inputs": f"{len(arrays[0])} generated semileptonic ttbar jets (PF candidates), repeated",
        "torch_weights": weights,
        "networks": {label: path.name for label, path in networks.items()},
        "mean_filled_slots": {name: float(np.mean(values)) for name, values in lengths.items()},
        "dense_lstm_flops_per_jet": roofline.deepjet_flops(model)["lstm"],
        "bucketed_lstm_flops_per_jet": roofline.bucketed_lstm_flops(model, lengths),
    }
    return result


def section_inputs(state: BenchState) -> dict[str, Any]:
    config = state.config
    rows = []
    path = samples.ttbar_sample(config.out, events=config.input_events, seed=config.seed, deepjet_inputs=False)
    row, built = inputs.measure_input_building(path, source="pfcands", repeats=config.repeats)
    state.arrays = (*built.arrays(), built.jet_pt)
    rows.append(row)
    try:
        path = samples.ttbar_sample(config.out, events=config.input_events, seed=config.seed, deepjet_inputs=True)
    except ImportError as error:
        rows.append({"source": "deepjet_branches", "skipped": f"generator cannot write Jet_DeepJet_* branches: {error}"})
    else:
        rows.append(inputs.measure_input_building(path, source="deepjet_branches", repeats=config.repeats)[0])
    return {"rows": rows}


def section_processor(state: BenchState) -> dict[str, Any]:
    config = state.config
    fileset = samples.processor_sample(config.out, events=config.sample_events, seed=config.seed)
    models, description = samples.model_sources(config.out, seed=config.seed)
    result = processor.measure_processor(fileset, models=models, chunksize=config.chunksize, device=str(state.device))
    return result | {"models_used": description, "sample_events": config.sample_events}


def section_training(state: BenchState) -> dict[str, Any]:
    config = state.config
    return training.measure_training(
        state.jet_inputs(), n_jets=config.train_jets, batch_size=config.train_batch_size,
        threads=state.threads, seed=config.seed, repeats=1,
    )


def section_scaling(state: BenchState) -> dict[str, Any]:
    config = state.config
    fileset_path = samples.processor_sample(config.out, events=config.sample_events, seed=config.seed)
    models, description = samples.model_sources(config.out, seed=config.seed)
    fileset = processor.load_calibration_fileset(fileset_path)
    result = scaling.measure_scaling(
        fileset, models, file_counts=config.scaling_files, chunksize=config.scaling_chunksize,
        tree_reduction=config.scaling_tree_reduction, folder=config.out / "scaling",
    )
    return result | {"models_used": description}


SECTION_FUNCTIONS: dict[str, Callable[[BenchState], dict[str, Any]]] = {
    "roofline": section_roofline,
    "inputs": section_inputs,
    "inference": section_inference,
    "processor": section_processor,
    "training": section_training,
    "scaling": section_scaling,
}


def run_benchmarks(config: BenchConfig) -> dict[str, Any]:
    """Run ``config.sections`` and write ``bench.json`` and ``bench.md`` into ``config.out``.

    A section that fails is recorded with its error and the others still run. The
    returned dict is the content of bench.json.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    state = BenchState(config, device)
    report: dict[str, Any] = {"machine": machine_info(device), "config": json.loads(config.model_dump_json()), "sections": {}}
    start = time.perf_counter()
    for name in config.sections:
        logger.info("benchmark %s ...", name)
        section_start = time.perf_counter()
        try:
            result = SECTION_FUNCTIONS[name](state)
        except Exception as error:  # a broken section must not hide the results of the others
            logger.exception("benchmark %s failed", name)
            result = {"error": f"{type(error).__name__}: {error}"}
        result["wall_s"] = time.perf_counter() - section_start
        report["sections"][name] = result
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["total_wall_s"] = time.perf_counter() - start
    report["targets"] = evaluate_targets(report["sections"])
    write_report(report, config.out)
    return report


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``bench.json`` and the Markdown tables ``bench.md``; return both paths."""
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    md_path.write_text(markdown_report(report))
    return json_path, md_path
