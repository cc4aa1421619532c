"""Per-epoch validation: loss and robustness of the current model."""

from __future__ import annotations

from functools import partial

import numpy as np
from torch import nn

from advcalib.attacks import PerturbationSpace, fgsm
from advcalib.training.config import TrainConfig
from advcalib.training.inference import craft, predict
from advcalib.training.metrics import discriminator_aucs
from advcalib.training.sample import JetSample, model_targets

#: Discriminators tracked after every epoch.
TRACKED = ("BvsL", "CvsB", "CvsL")


def weighted_log_loss(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean of ``-log p(true class)`` (probabilities floored at 1e-12)."""
    p_true = np.clip(probs[np.arange(len(targets)), targets], 1e-12, 1.0)
    return float(np.sum(-np.log(p_true) * weights) / max(float(np.sum(weights)), 1e-12))


def validate(model: nn.Module, sample: JetSample, *, config: TrainConfig, space: PerturbationSpace) -> dict[str, float]:
    """Return validation loss and BvsL, CvsB, CvsL AUCs on clean and on FGSM-attacked jets.

    The FGSM jets are crafted against ``model`` as it is now, with ``config.track_epsilon``
    and the cap ``config.track_restrict_impact``.  Keys: ``val_loss``, ``auc_clean_<disc>``,
    ``auc_fgsm_<disc>``.
    """
    targets = model_targets(sample.labels, config.architecture)
    probs = predict(model, sample.inputs)
    record = {"val_loss": weighted_log_loss(probs, targets, sample.weights)}
    for name, value in discriminator_aucs(probs, sample.labels, TRACKED).items():
        record[f"auc_clean_{name}"] = value
    attack = partial(_fgsm_batch, model, space, config.track_restrict_impact)
    attacked = craft(attack, sample.inputs, targets, epsilon=config.track_epsilon)
    for name, value in discriminator_aucs(predict(model, attacked), sample.labels, TRACKED).items():
        record[f"auc_fgsm_{name}"] = value
    return record


def _fgsm_batch(model, space, restrict_impact, inputs, targets, epsilon):  # noqa: ANN001, ANN202
    return fgsm(model, inputs, targets, space, epsilon=epsilon, restrict_impact=restrict_impact)
