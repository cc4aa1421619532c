"""Jets ready for training: input arrays, DeepJet class, weight and kinematics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from advcalib.spec import DEEPCSV_CLASSES, DEEPJET_CLASSES
from advcalib.training.labels import B_CLASSES, C_CLASSES, CLASS_INDEX, LIGHT_CLASSES

#: DeepJet class -> DeepCSV class (b and lepb are b; uds and g are udsg).
DEEPCSV_TARGET = np.array(
    [DEEPCSV_CLASSES.index(name) for name in ("b", "bb", "b", "c", "udsg", "udsg")], dtype=np.int64
)


@dataclass
class JetSample:
    """Network inputs of N jets with their DeepJet class, training weight, pt and eta.

    ``inputs`` contains one float32 array per input group (``(glob, cpf, npf, sv)`` for
    DeepJet, ``(x,)`` for DeepCSV), ``labels`` the DeepJet class index (0..5).
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    weights: np.ndarray
    pt: np.ndarray
    eta: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        lengths = {len(a) for a in (*self.inputs, self.weights, self.pt, self.eta)}
        if lengths != {n}:
            raise ValueError(f"sample arrays have different lengths {sorted(lengths | {n})}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(DEEPJET_CLASSES)):
            raise ValueError("sample labels must be DeepJet class indices 0..5; drop jets without a class first")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> JetSample:
        """Return the jets at ``index`` (integer indices or a boolean mask)."""
        return JetSample(
            inputs=tuple(a[index] for a in self.inputs),
            labels=self.labels[index],
            weights=self.weights[index],
            pt=self.pt[index],
            eta=self.eta[index],
        )


def split_sample(sample: JetSample, *, validation_fraction: float, seed: int) -> tuple[JetSample, JetSample]:
    """Split into (training, validation) jets at random with a fixed seed."""
    order = np.random.default_rng(seed).permutation(len(sample))
    n_val = int(round(validation_fraction * len(sample)))
    if n_val < 1 or n_val >= len(sample):
        raise ValueError(
            f"validation fraction {validation_fraction} of {len(sample)} jets leaves an empty training "
            "or validation set; use more jets or another fraction"
        )
    return sample.take(np.sort(order[n_val:])), sample.take(np.sort(order[:n_val]))


def model_targets(labels: np.ndarray, architecture: str) -> np.ndarray:
    """Translate DeepJet class indices into the output classes of ``architecture``."""
    if architecture == "DeepCSV":
        return DEEPCSV_TARGET[labels]
    return np.asarray(labels, dtype=np.int64)


def flavour_epsilon(labels: np.ndarray, *, epsilon: float, per_flavour: dict[str, float] | None) -> np.ndarray | float:
    """Return the attack epsilon per jet: ``per_flavour`` b/c/l values override ``epsilon``."""
    if not per_flavour:
        return epsilon
    values = np.full(len(labels), epsilon, dtype=np.float32)
    groups = {"b": B_CLASSES, "c": C_CLASSES, "l": LIGHT_CLASSES}
    for key, value in per_flavour.items():
        values[np.isin(labels, groups[key])] = value
    return values


def batches(n: int, batch_size: int, *, order: np.ndarray | None = None, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Yield index arrays of consecutive batches (a trailing batch of one jet is dropped when training)."""
    index = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        chunk = index[start : start + batch_size]
        if drop_last and len(chunk) < 2:
            return
        yield chunk


def to_tensors(arrays: tuple[np.ndarray, ...], index: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Slice ``index`` out of every input array and return float32 tensors."""
    return tuple(torch.as_tensor(np.ascontiguousarray(a[index]), dtype=torch.float32, device=device) for a in arrays)


__all__ = ["CLASS_INDEX", "JetSample", "batches", "flavour_epsilon", "model_targets", "split_sample", "to_tensors"]
