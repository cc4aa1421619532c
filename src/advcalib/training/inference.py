"""Batched prediction and attack crafting on whole samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from advcalib.attacks import Inputs, PerturbationSpace
from advcalib.training.sample import batches, to_tensors

#: Crafts perturbed inputs for one batch: ``(inputs, targets, epsilon) -> inputs``.
BatchAttack = Callable[[Inputs, torch.Tensor, "float | torch.Tensor"], Inputs]


@torch.no_grad()
def predict(model: nn.Module, inputs: tuple[np.ndarray, ...], *, batch_size: int = 4096) -> np.ndarray:
    """Return softmax probabilities ``[N, n_classes]`` of ``model`` in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    try:
        parts = [torch.softmax(model(*to_tensors(inputs, idx)), dim=1).numpy() for idx in batches(len(inputs[0]), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def craft(
    attack: BatchAttack,
    inputs: tuple[np.ndarray, ...],
    targets: np.ndarray,
    *,
    epsilon: float | np.ndarray,
    batch_size: int = 4096,
) -> tuple[np.ndarray, ...]:
    """Apply a batch attack to a whole sample and return the perturbed arrays.

    ``epsilon`` is a float or one value per jet.
    """
    out: list[list[np.ndarray]] = [[] for _ in inputs]
    per_jet = isinstance(epsilon, np.ndarray)
    for idx in batches(len(targets), batch_size):
        eps = torch.as_tensor(epsilon[idx]) if per_jet else epsilon
        crafted = attack(to_tensors(inputs, idx), torch.as_tensor(targets[idx]), eps)
        for store, tensor in zip(out, crafted):
            store.append(tensor.numpy())
    return tuple(np.concatenate(parts) for parts in out)


def space_for(scales: dict[str, np.ndarray]) -> PerturbationSpace:
    """Build the CPU perturbation space of a feature-scale dict."""
    return PerturbationSpace.build(scales)
