"""Per-jet training weights that give every class the (pt, eta) spectrum of b jets.

Method: as in the DeepJet training, jets of each class are histogrammed in (pt, |eta|)
and weighted by the ratio of the normalised b-jet histogram (the reference: DeepJet
classes b, bb and lepb together) to the normalised histogram of their own class, so the
network cannot tell flavours apart by kinematics alone.  Weights are capped at
``max_weight`` (sparse bins otherwise dominate the loss) and scaled so that each class
keeps its number of jets as its sum of weights.  Edge cases: a bin without reference
jets gives weight 0; a class without jets is skipped.
"""

from __future__ import annotations

import logging

import numpy as np

from advcalib.training.labels import B_CLASSES, CLASS_INDEX

logger = logging.getLogger(__name__)

#: Bin edges in jet pt [GeV]: log-spaced from 20 GeV to 1 TeV, overflow in the last bin.
PT_EDGES = np.geomspace(20.0, 1000.0, 21)
#: Bin edges in |eta|.
ABSETA_EDGES = np.linspace(0.0, 2.5, 11)


def _histogram(pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    pt = np.clip(pt, PT_EDGES[0], PT_EDGES[-1] * (1 - 1e-9))
    abseta = np.clip(abseta, ABSETA_EDGES[0], ABSETA_EDGES[-1] * (1 - 1e-9))
    counts, _, _ = np.histogram2d(pt, abseta, bins=(PT_EDGES, ABSETA_EDGES))
    return counts


def _bin_index(pt: np.ndarray, abseta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i = np.clip(np.digitize(pt, PT_EDGES) - 1, 0, len(PT_EDGES) - 2)
    j = np.clip(np.digitize(abseta, ABSETA_EDGES) - 1, 0, len(ABSETA_EDGES) - 2)
    return i, j


def reference_weights(
    labels: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    *,
    max_weight: float = 10.0,
) -> np.ndarray:
    """Return float32 weights reweighting every class to the b-jet (pt, |eta|) distribution.

    Args:
        labels: DeepJet class index per jet (all >= 0).
        pt, eta: jet pt [GeV] and pseudorapidity.
        max_weight: cap applied to the density ratio before normalisation.

    Raises:
        ValueError: when there are no b jets to build the reference from.
    """
    labels = np.asarray(labels)
    abseta = np.abs(np.asarray(eta, dtype=np.float64))
    pt = np.asarray(pt, dtype=np.float64)
    is_b = np.isin(labels, B_CLASSES)
    if not is_b.any():
        raise ValueError("no b jets in the sample: the (pt, eta) reference needs b, bb or lepb jets")
    reference = _histogram(pt[is_b], abseta[is_b])
    reference /= reference.sum()
    weights = np.zeros(len(labels), dtype=np.float64)
    bins = _bin_index(pt, abseta)
    for name, index in CLASS_INDEX.items():
        selected = labels == index
        if not selected.any():
            continue
        own = _histogram(pt[selected], abseta[selected])
        own /= own.sum()
        ratio = np.divide(reference, own, out=np.zeros_like(reference), where=own > 0)
        w = np.minimum(ratio[bins[0][selected], bins[1][selected]], max_weight)
        if w.sum() <= 0:
            logger.warning("class %s has no jets in (pt, eta) bins populated by b jets; its weights are 0", name)
            continue
        weights[selected] = w * selected.sum() / w.sum()
    return weights.astype(np.float32)
