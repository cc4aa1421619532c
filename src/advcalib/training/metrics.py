"""ROC curves and AUCs of the CMS flavour discriminators.

The curves follow CMS practice: BvsL separates b jets (DeepJet classes b, bb, lepb) from
light jets (uds, g), CvsB c jets from b jets, CvsL c jets from light jets, and BvsC b jets
from c jets.  BvsC is ``1 - CvsB`` on jets where CvsB is defined; the discriminators
themselves come from :func:`advcalib.models.discriminators`.
"""

from __future__ import annotations

import numpy as np

from advcalib.models.discriminators import discriminators
from advcalib.spec import DEEPCSV_CLASSES, DEEPJET_CLASSES
from advcalib.training.labels import B_CLASSES, C_CLASSES, LIGHT_CLASSES

#: Discriminator -> (signal classes, background classes) of its ROC curve.
ROC_DEFINITIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "BvsL": (B_CLASSES, LIGHT_CLASSES),
    "CvsB": (C_CLASSES, B_CLASSES),
    "CvsL": (C_CLASSES, LIGHT_CLASSES),
    "BvsC": (B_CLASSES, C_CLASSES),
}


def roc_curve(signal: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (background efficiency, signal efficiency) for cuts at every distinct score.

    The first point is (0, 0) (cut above every score) and the last (1, 1); ties are
    stepped over together, so the curve is exact for discrete scores.
    """
    scores = np.concatenate([signal, background])
    is_signal = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_signal = scores[order], is_signal[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tpr = np.cumsum(is_signal)[last_of_tie] / max(len(signal), 1)
    fpr = np.cumsum(1 - is_signal)[last_of_tie] / max(len(background), 1)
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


def auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a signal jet scores above a background jet.

    Ties count one half (trapezoidal rule).  Returns NaN when either sample is empty.
    """
    if len(signal) == 0 or len(background) == 0:
        return float("nan")
    fpr, tpr = roc_curve(np.asarray(signal, dtype=np.float64), np.asarray(background, dtype=np.float64))
    return float(np.trapezoid(tpr, fpr))


def deepjet_probabilities(probs: np.ndarray) -> np.ndarray:
    """Return six-class DeepJet-ordered probabilities; DeepCSV's four classes are spread onto them.

    DeepCSV ``(b, bb, c, udsg)`` becomes ``(b, bb, 0, c, udsg, 0)``, so BvsL, CvsB and CvsL
    keep their meaning (QvsG does not exist for DeepCSV).
    """
    if probs.shape[1] == len(DEEPJET_CLASSES):
        return probs
    if probs.shape[1] != len(DEEPCSV_CLASSES):
        raise ValueError(f"expected 6 DeepJet or 4 DeepCSV probabilities per jet, got {probs.shape[1]}")
    zeros = np.zeros(len(probs), dtype=probs.dtype)
    return np.stack([probs[:, 0], probs[:, 1], zeros, probs[:, 2], probs[:, 3], zeros], axis=1)


def discriminator_scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Compute BvsL, CvsB, CvsL and BvsC per jet from class probabilities (-1 where undefined)."""
    values = discriminators(deepjet_probabilities(np.asarray(probs)))
    cvsb = values["CvsB"]
    return {
        "BvsL": values["BvsL"],
        "CvsB": cvsb,
        "CvsL": values["CvsL"],
        "BvsC": np.where(cvsb >= 0, 1.0 - cvsb, -1.0),
    }


def roc_inputs(scores: dict[str, np.ndarray], labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the scores of discriminator ``name`` into its signal and background jets."""
    signal_classes, background_classes = ROC_DEFINITIONS[name]
    values = scores[name]
    return values[np.isin(labels, signal_classes)], values[np.isin(labels, background_classes)]


def discriminator_aucs(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...] = tuple(ROC_DEFINITIONS)) -> dict[str, float]:
    """AUC of each discriminator on jets with DeepJet class ``labels`` (see ``ROC_DEFINITIONS``)."""
    scores = discriminator_scores(probs)
    return {name: auc(*roc_inputs(scores, labels, name)) for name in names}
