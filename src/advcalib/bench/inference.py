"""DeepJet inference rates: advcalib's torch DeepJet against onnxruntime on the CMS networks.

Every variant runs the whole input set in batches and returns probabilities as numpy
arrays, as ``Tagger.predict`` does (host-to-device copies and the softmax included).
The torch variants use the weights of ``DeepJet_Run3_122X.onnx`` imported into
``advcalib.models.DeepJet``, so their outputs can be compared with onnxruntime on the
same file. ``DeepFlavourV03_10X.onnx`` (Run 2, converted from Keras) has the same layers
and FLOPs but no torch copy; it runs in onnxruntime only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advcalib.bench.timing import best_time, torch_threads
from advcalib.models import import_onnx_deepjet
from advcalib.models.fast import FastDeepJet, sequence_lengths
from advcalib.models.onnx_import import ONNX_OUTPUT
from advcalib.models.onnx_tagger import onnx_providers
from advcalib.spec import DEEPJET_GROUPS, JET_PT

logger = logging.getLogger(__name__)

#: File names of the CMS networks inside the folder of CMS models.
CMS_NETWORKS = {"Run3": "DeepJet_Run3_122X.onnx", "Run2": "DeepFlavourV03_10X.onnx"}

Predict = Callable[[tuple[np.ndarray, ...]], np.ndarray]


def tile_inputs(arrays: tuple[np.ndarray, ...], n_jets: int) -> tuple[np.ndarray, ...]:
    """Repeat the jets of ``arrays`` until there are ``n_jets``; ValueError when there are none."""
    if len(arrays[0]) == 0:
        raise ValueError("no jets to run inference on; generate more events (BenchConfig.input_events)")
    index = np.arange(n_jets) % len(arrays[0])
    return tuple(np.ascontiguousarray(a[index]) for a in arrays)


def torch_predictor(module: Callable[..., torch.Tensor], device: torch.device) -> Predict:
    """Wrap a module returning logits into a numpy-in, probabilities-out function."""

    def predict(batch: tuple[np.ndarray, ...]) -> np.ndarray:
        tensors = [torch.from_numpy(a).to(device, non_blocking=True) for a in batch[: len(DEEPJET_GROUPS)]]
        with torch.inference_mode():
            return torch.softmax(module(*tensors), dim=1).cpu().numpy()

    return predict


def onnx_predictor(path: Path, *, n_threads: int, device: torch.device) -> Predict:
    """Open an onnxruntime session with ``n_threads`` intra-op threads and all graph optimisations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=onnx_providers(device))
    names = [group.onnx_name for group in DEEPJET_GROUPS] + [JET_PT.onnx_name]

    def predict(batch: tuple[np.ndarray, ...]) -> np.ndarray:
        return session.run([ONNX_OUTPUT], dict(zip(names, batch)))[0]

    return predict


def torch_variants(model: torch.nn.Module, example: tuple[np.ndarray, ...], device: torch.device) -> dict[str, Any]:
    """Build the torch variants: eager, TorchScript (trace, script; both frozen) and the fast paths.

    ``torch-folded`` folds the BatchNorms only, ``torch-bucketed`` skips padded LSTM steps
    only, ``torch-fast`` does both and is what ``Tagger.predict`` runs (see
    ``advcalib.models.fast``).
    """
    model = model.eval().to(device)
    tensors = tuple(torch.from_numpy(a).to(device) for a in example[: len(DEEPJET_GROUPS)])
    # torch 2.x marks TorchScript deprecated and warns that the LSTM's shape check is
    # traced as a constant; both are expected for a benchmark of the TorchScript path.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.freeze(torch.jit.trace(model, tensors))
        scripted = torch.jit.freeze(torch.jit.script(model))
    return {
        "torch-eager": model,
        "torch-trace": traced,
        "torch-script": scripted,
        "torch-folded": FastDeepJet(model, fold=True, bucket=False),
        "torch-bucketed": FastDeepJet(model, fold=False, bucket=True),
        "torch-fast": FastDeepJet(model),
    }


def run_all(predict: Predict, arrays: tuple[np.ndarray, ...], batch_size: int) -> np.ndarray:
    """Predict every jet of ``arrays`` in batches of ``batch_size``."""
    n = len(arrays[0])
    parts = [predict(tuple(a[start : start + batch_size] for a in arrays)) for start in range(0, n, batch_size)]
    return np.concatenate(parts)


def _measure(predict: Predict, arrays: tuple[np.ndarray, ...], *, batch_size: int, repeats: int, device: torch.device) -> float:
    first = tuple(a[:batch_size] for a in arrays)
    predict(first)  # warm-up: allocator, TorchScript profiling runs, onnxruntime arenas
    seconds = best_time(lambda: run_all(predict, arrays, batch_size), repeats=repeats, device=device, warmup=0)
    return len(arrays[0]) / seconds


def measure_inference(
    arrays: tuple[np.ndarray, ...],
    *,
    model: torch.nn.Module,
    networks: dict[str, Path],
    batch_sizes: tuple[int, ...],
    thread_counts: tuple[int, ...],
    repeats: int,
    device: torch.device,
) -> dict[str, Any]:
    """Measure jets/s of every variant; the full batch scan for eager, fast and onnxruntime Run 3.

    ``model`` is the torch DeepJet; ``networks`` maps "Run3"/"Run2" to the ONNX files found
    (possibly none). The other variants run at the batch size closest to 4096 only, which
    keeps the run within its time budget. Returns the rows and, when the
    Run 3 network is present, the largest probability difference of each torch variant.
    """
    variants = torch_variants(model, arrays, device)
    reference_batch = min(batch_sizes, key=lambda b: abs(b - 4096))
    rows: list[dict[str, Any]] = []
    for n_threads in thread_counts:
        with torch_threads(n_threads):
            predictors: dict[str, Predict] = {name: torch_predictor(m, device) for name, m in variants.items()}
            for label, path in networks.items():
                predictors[f"onnxruntime-{label}"] = onnx_predictor(path, n_threads=n_threads, device=device)
            for name, predict in predictors.items():
                scan = name in ("torch-eager", "torch-fast", "onnxruntime-Run3")
                for batch_size in batch_sizes if scan else (reference_batch,):
                    n_jets = max(len(arrays[0]), batch_size)
                    rate = _measure(predict, tile_inputs(arrays, n_jets), batch_size=batch_size, repeats=repeats, device=device)
                    rows.append({"variant": name, "threads": n_threads, "batch_size": batch_size, "jets_per_s": rate})
                    logger.info("inference %s, %d threads, batch %d: %.0f jets/s", name, n_threads, batch_size, rate)
    result: dict[str, Any] = {"rows": rows}
    if "Run3" in networks:
        result["max_abs_difference_to_onnxruntime_Run3"] = agreement(variants, networks["Run3"], arrays, device)
    return result


def agreement(variants: dict[str, Any], network: Path, arrays: tuple[np.ndarray, ...], device: torch.device) -> dict[str, float]:
    """Maximum absolute difference of the probabilities of each torch variant from onnxruntime on ``network``."""
    batch = tuple(a[:1024] for a in arrays)
    reference = onnx_predictor(network, n_threads=torch.get_num_threads(), device=device)(batch)
    return {name: float(np.abs(torch_predictor(m, device)(batch) - reference).max()) for name, m in variants.items()}


def load_torch_model(networks: dict[str, Path]) -> tuple[torch.nn.Module, str]:
    """Return the torch DeepJet with the Run 3 CMS weights, or an untrained one without that file."""
    if "Run3" in networks:
        return import_onnx_deepjet(networks["Run3"]), f"weights of {networks['Run3'].name}"
    from advcalib.models import DeepJet

    return DeepJet(), "untrained DeepJet (Run 3 network not found)"


def find_networks(folder: Path | None) -> dict[str, Path]:
    """Return the CMS networks present in ``folder`` by label ("Run3", "Run2")."""
    if folder is None:
        return {}
    return {label: folder / name for label, name in CMS_NETWORKS.items() if (folder / name).is_file()}


def multiplicities(arrays: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Mean filled slots per jet of the charged, neutral and vertex sequences."""
    lengths = {}
    for group, array in zip(DEEPJET_GROUPS[1:], arrays[1:4]):
        lengths[group.name] = float(sequence_lengths(torch.from_numpy(array)).float().mean())
    return lengths
