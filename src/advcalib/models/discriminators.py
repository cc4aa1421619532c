"""DeepJet discriminators from the six class probabilities: the one place they are defined.

With ``b = P(b) + P(bb) + P(lepb)``, ``c = P(c)``, ``uds = P(uds)`` and ``g = P(g)``:

- ``BvsAll = b``
- ``BvsL = b / (b + uds + g)``
- ``CvsL = c / (c + uds + g)``
- ``CvsB = c / (c + b)``
- ``QvsG = g / (g + uds)``

The ratios match the ``Jet_btagDeepFlavB``, ``CvL``, ``CvB`` and ``QG`` columns of
CMSSW's NanoAOD jet table (``PhysicsTools/NanoAOD/python/jets_cff.py``), which also give -1
where the denominator is not positive. ``QG`` there is "g vs uds", the ratio named QvsG here.
NanoAOD stores the values rounded to 10 mantissa bits, so they agree with this module to
about 1e-3, not to float precision.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from advcalib.spec import DEEPJET_CLASSES

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Names of the discriminators, in the order ``discriminators`` returns them.
DISCRIMINATOR_NAMES: tuple[str, ...] = ("BvsAll", "BvsL", "CvsL", "CvsB", "QvsG")


def _ratio(numerator: Array, denominator: Array) -> Array:
    if isinstance(denominator, torch.Tensor):
        valid = denominator > 0
        safe = torch.where(valid, denominator, torch.ones_like(denominator))
        return torch.where(valid, numerator / safe, torch.full_like(numerator, -1.0))
    valid = denominator > 0
    safe = np.where(valid, denominator, 1.0)
    return np.where(valid, numerator / safe, -1.0).astype(np.result_type(numerator, np.float32), copy=False)


def discriminators(probs: Array) -> dict[str, Array]:
    """Compute BvsAll, BvsL, CvsL, CvsB and QvsG from DeepJet probabilities ``[N, 6]``.

    ``probs`` columns follow ``advcalib.spec.DEEPJET_CLASSES`` (b, bb, lepb, c, uds, g).
    Works on numpy arrays and torch tensors and returns the same kind, one ``[N]`` array
    per name, differentiable for tensors (the -1 branch has zero gradient). Where a
    denominator is <= 0 the value is -1; BvsAll, which has no denominator, is the plain
    sum ``b + bb + lepb``. Raises ``ValueError`` for an input that is not ``[N, 6]``.
    """
    if probs.ndim != 2 or probs.shape[1] != len(DEEPJET_CLASSES):
        raise ValueError(
            f"expected DeepJet probabilities of shape [N, {len(DEEPJET_CLASSES)}] "
            f"(columns {', '.join(DEEPJET_CLASSES)}), got shape {tuple(probs.shape)}"
        )
    b_prob, bb_prob, lepb_prob, c_prob, uds_prob, g_prob = (probs[:, i] for i in range(len(DEEPJET_CLASSES)))
    b_all = b_prob + bb_prob + lepb_prob
    return {
        "BvsAll": b_all,
        "BvsL": _ratio(b_all, b_all + uds_prob + g_prob),
        "CvsL": _ratio(c_prob, c_prob + uds_prob + g_prob),
        "CvsB": _ratio(c_prob, c_prob + b_all),
        "QvsG": _ratio(g_prob, g_prob + uds_prob),
    }
