"""Cost of adversarial training: FGSM epoch time over nominal epoch time on the same sample."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from advcalib.bench.timing import torch_threads

logger = logging.getLogger(__name__)


def training_sample(arrays: tuple[np.ndarray, ...], *, n_jets: int, seed: int) -> Any:
    """Build a ``JetSample`` of ``n_jets`` jets from input arrays, with random classes and unit weights."""
    from advcalib.bench.inference import tile_inputs
    from advcalib.training import JetSample

    inputs = tile_inputs(arrays[:4], n_jets)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=n_jets)
    return JetSample(
        inputs=inputs,
        labels=labels,
        weights=np.ones(n_jets, dtype=np.float32),
        pt=inputs[0][:, 0].copy(),
        eta=inputs[0][:, 1].copy(),
    )


def _epoch_seconds(sample: Any, *, adversarial: str | None, batch_size: int, seed: int, repeats: int) -> float:
    from advcalib.attacks import feature_scales
    from advcalib.models import DeepJet
    from advcalib.training import TrainConfig, train_epoch
    from advcalib.training.inference import space_for
    from advcalib.training.loop import make_optimizer

    config = TrainConfig(batch_size=batch_size, adversarial=adversarial, seed=seed)
    space = space_for(feature_scales(sample.inputs))
    torch.manual_seed(seed)
    model = DeepJet()
    optimizer, _ = make_optimizer(model, config)
    times = [
        train_epoch(model, optimizer, sample, config=config, space=space, epoch=epoch)["epoch_time_s"]
        for epoch in range(1, repeats + 2)
    ]
    return min(times[1:])  # the first epoch pays for allocations and is not counted


def measure_training(arrays: tuple[np.ndarray, ...], *, n_jets: int, batch_size: int, threads: int, seed: int, repeats: int) -> dict[str, Any]:
    """Time one nominal and one FGSM epoch (``adv_fraction`` 1, eps 0.01) on CPU with ``threads`` threads."""
    sample = training_sample(arrays, n_jets=n_jets, seed=seed)
    with torch_threads(threads):
        nominal = _epoch_seconds(sample, adversarial=None, batch_size=batch_size, seed=seed, repeats=repeats)
        adversarial = _epoch_seconds(sample, adversarial="fgsm", batch_size=batch_size, seed=seed, repeats=repeats)
    logger.info("training epoch: nominal %.2f s, FGSM %.2f s", nominal, adversarial)
    return {
        "jets": n_jets,
        "batch_size": batch_size,
        "threads": threads,
        "nominal_epoch_s": nominal,
        "adversarial_epoch_s": adversarial,
        "ratio": adversarial / nominal,
    }
