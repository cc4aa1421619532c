"""The training loop: weighted cross-entropy, optional adversarial batches, checkpoints and resume.

Reproducibility: each epoch reseeds torch (dropout) and draws its shuffling and the choice
of adversarial jets from a generator seeded with ``(seed, epoch)``, so an epoch depends
only on the weights and optimiser state it starts from.  Resuming from the checkpoint of
epoch k therefore gives the same epoch k+1 as an uninterrupted run (bit for bit on the
same machine and thread count).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advcalib.attacks import GRADIENT_ATTACKS, PerturbationSpace
from advcalib.models import save_checkpoint
from advcalib.training.checkpoints import ResumeState, load_resume_state, save_resume_state
from advcalib.training.config import TrainConfig
from advcalib.training.history import write_history
from advcalib.training.inference import space_for
from advcalib.training.sample import JetSample, batches, flavour_epsilon, model_targets, to_tensors
from advcalib.training.validation import validate

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """Progress-bar interface of the loop; a ``tqdm`` bar provides it."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


#: Creates a progress bar for ``total`` batches of epoch ``epoch``.
ProgressFactory = Callable[[int, int], Progress]


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """Random generator of one epoch (shuffling, adversarial selection)."""
    return np.random.default_rng([seed, epoch])


def _weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    losses = F.cross_entropy(logits, targets, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def _adversarial_inputs(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    labels: np.ndarray,
    *,
    config: TrainConfig,
    space: PerturbationSpace,
    rng: np.random.Generator,
) -> tuple[tuple[torch.Tensor, ...], int]:
    """Replace a fraction ``adv_fraction`` of the batch by jets crafted against the current model."""
    chosen = np.flatnonzero(rng.random(len(labels)) < config.adv_fraction) if config.adv_fraction < 1 else np.arange(len(labels))
    if len(chosen) == 0:
        return inputs, 0
    eps = flavour_epsilon(labels[chosen], epsilon=config.epsilon, per_flavour=config.epsilon_per_flavour)
    eps_tensor = torch.as_tensor(eps) if isinstance(eps, np.ndarray) else eps
    index = torch.as_tensor(chosen)
    attack = GRADIENT_ATTACKS[config.adversarial]
    crafted = attack(
        model,
        tuple(x[index] for x in inputs),
        targets[index],
        space,
        epsilon=eps_tensor,
        restrict_impact=config.restrict_impact,
    )
    mixed = []
    for x, x_adv in zip(inputs, crafted):
        x = x.clone()
        x[index] = x_adv
        mixed.append(x)
    return tuple(mixed), len(chosen)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sample: JetSample,
    *,
    config: TrainConfig,
    space: PerturbationSpace,
    epoch: int,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Run one epoch of optimisation; return mean loss, adversarial jets, wall and CPU time [s].

    The CPU time of the process is reported beside the wall time because it is less
    sensitive to other programs sharing the machine.
    """
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = epoch_generator(config.seed, epoch)
    adversarial = config.adversarial is not None and epoch > config.start_after
    targets_all = model_targets(sample.labels, config.architecture)
    model.train()
    total_loss, total_weight, n_adversarial = 0.0, 0.0, 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for index in batches(len(sample), config.batch_size, order=rng.permutation(len(sample)), drop_last=True):
        inputs = to_tensors(sample.inputs, index)
        targets = torch.as_tensor(targets_all[index])
        weights = torch.as_tensor(sample.weights[index])
        if adversarial:
            inputs, n = _adversarial_inputs(
                model, inputs, targets, sample.labels[index], config=config, space=space, rng=rng
            )
            n_adversarial += n
        loss = _weighted_loss(model(*inputs), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * float(weights.sum())
        total_weight += float(weights.sum())
        if progress is not None:
            progress.update(1)
    return {
        "train_loss": total_loss / max(total_weight, 1e-12),
        "n_adversarial": float(n_adversarial),
        "epoch_time_s": time.perf_counter() - start,
        "epoch_cpu_s": time.process_time() - start_cpu,
    }


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with per-epoch exponential learning-rate decay."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)


def _save_epoch(
    model: nn.Module,
    out_dir: Path,
    state: ResumeState,
    *,
    config: TrainConfig,
    feature_scales: dict[str, np.ndarray],
    metadata: dict[str, Any],
    is_best: bool,
) -> Path:
    meta = {**metadata, "epoch": state.epoch, "history": state.history}
    path = out_dir / f"epoch_{state.epoch:03d}.pt"
    save_checkpoint(path, model, config=config.model_dump(), feature_scales=feature_scales, metadata=meta, overwrite=True)
    save_resume_state(path, state)
    if is_best:
        save_checkpoint(out_dir / "best.pt", model, config=config.model_dump(), feature_scales=feature_scales, metadata=meta, overwrite=True)
    return path


def fit(
    model: nn.Module,
    train: JetSample,
    validation: JetSample,
    *,
    config: TrainConfig,
    feature_scales: dict[str, np.ndarray],
    out_dir: Path,
    metadata: dict[str, Any] | None = None,
    resume: Path | None = None,
    progress: ProgressFactory | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``config.epochs`` epochs and return the per-epoch history.

    After every epoch the model is validated (loss, clean and FGSM AUCs, see
    :func:`advcalib.training.validation.validate`). It is then written to
    ``out_dir/epoch_NNN.pt`` (advcalib checkpoint with ``feature_scales``) and its
    optimiser state to ``epoch_NNN.state.pt`` for resuming. The epoch with the lowest
    validation loss is also written to ``out_dir/best.pt``. The history goes to
    ``out_dir/robustness_per_epoch.csv`` and ``.png``.

    ``resume`` is an ``epoch_NNN.pt`` of an earlier run with the same settings. Training
    continues at epoch NNN+1 with the feature scales stored in that checkpoint.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    optimizer, scheduler = make_optimizer(model, config)
    state = ResumeState(epoch=0, history=[], best_val_loss=float("inf"))
    if resume is not None:
        state, feature_scales = load_resume_state(resume, model=model, optimizer=optimizer, scheduler=scheduler, config=config)
        logger.info("resuming %s after epoch %d", resume, state.epoch)
    space = space_for(feature_scales)
    n_batches = sum(1 for _ in batches(len(train), config.batch_size, drop_last=True))
    for epoch in range(state.epoch + 1, config.epochs + 1):
        bar = progress(n_batches, epoch) if progress else None
        try:
            record = train_epoch(model, optimizer, train, config=config, space=space, epoch=epoch, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        record = {"epoch": float(epoch), "learning_rate": optimizer.param_groups[0]["lr"], **record}
        scheduler.step()
        record.update(validate(model, validation, config=config, space=space))
        is_best = record["val_loss"] < state.best_val_loss
        state = ResumeState(
            epoch=epoch,
            history=[*state.history, record],
            best_val_loss=min(state.best_val_loss, record["val_loss"]),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
        )
        _save_epoch(model, out_dir, state, config=config, feature_scales=feature_scales, metadata=metadata or {}, is_best=is_best)
        write_history(state.history, out_dir)
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
    return state.history
