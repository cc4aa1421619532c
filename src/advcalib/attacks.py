"""Adversarial and systematic input perturbations for taggers fed by input groups.

Every perturbation works on a tuple of input tensors, one per input group of
:mod:`advcalib.spec` (``(glob, cpf, npf, sv)`` for DeepJet, ``(x,)`` for DeepCSV), and
moves each input by at most ``epsilon * scale``, where ``scale`` is the per-feature and
per-slot width from :func:`feature_scales`.  Integer-valued features (spec flag
``integer``) and inputs that are exactly zero (padding and defaults) are never moved,
and shifted values are clipped to the spec's bounds.  With ``restrict_impact=r`` every
shift is further capped at ``r * |x|``.

Methods:

* FGSM, the fast gradient sign method (Goodfellow, Shlens, Szegedy, arXiv:1412.6572):
  ``x + eps * scale * sign(dL/dx)``.
* NGM, the normalised gradient method: the gradient in units of the feature scale,
  divided by its L2 norm per jet and multiplied by ``sqrt(k)`` (``k`` movable inputs in
  the jet). It spends the same L2 budget as FGSM but follows the gradient direction.
* PGD, projected gradient descent (Madry et al., arXiv:1706.06083): repeated sign steps
  of ``step_size * scale``, projected back into the ``eps * scale`` box after each step.
* Gaussian noise with width ``sigma * scale`` and coherent shifts of all inputs up or
  down by ``eps * scale``, both without gradients (usable with ONNX models).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advcalib import spec

logger = logging.getLogger(__name__)

Inputs = tuple[torch.Tensor, ...]

#: Quantiles (percent) whose half-distance defines a feature's scale.
SCALE_QUANTILES: tuple[float, float] = (0.5, 99.5)
#: A slot with fewer non-zero values than this takes the scale pooled over all slots.
MIN_VALUES_PER_SLOT = 50


def groups_for(n_inputs: int) -> tuple[spec.InputGroup, ...]:
    """Return the spec input groups of a tagger with ``n_inputs`` input tensors.

    Four tensors are DeepJet's (global, charged, neutral, vertex), one is DeepCSV's.
    """
    if n_inputs == len(spec.DEEPJET_GROUPS):
        return spec.DEEPJET_GROUPS
    if n_inputs == 1:
        return (spec.DEEPCSV,)
    raise ValueError(f"expected 4 DeepJet input tensors or 1 DeepCSV tensor, got {n_inputs}")


def _group_scale(values: np.ndarray, group: spec.InputGroup) -> np.ndarray:
    """Scale of one group: ``(q99.5 - q0.5) / 2`` over the non-zero values per feature and slot."""
    per_slot = values.reshape(len(values), group.slots, len(group.features))
    low_q, high_q = SCALE_QUANTILES
    scale = np.zeros((group.slots, len(group.features)), dtype=np.float32)
    for j, feature in enumerate(group.features):
        if feature.integer:
            continue
        column = per_slot[:, :, j]
        pooled = column[column != 0]
        pooled_scale = 0.0
        if pooled.size:
            pooled_scale = float(np.percentile(pooled, high_q) - np.percentile(pooled, low_q)) / 2
        for slot in range(group.slots):
            nonzero = column[:, slot][column[:, slot] != 0]
            if nonzero.size < MIN_VALUES_PER_SLOT:
                scale[slot, j] = pooled_scale
            else:
                scale[slot, j] = (np.percentile(nonzero, high_q) - np.percentile(nonzero, low_q)) / 2
    return scale.reshape(group.shape)


def feature_scales(arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Compute the attack scale of every input: half the central 99 % range.

    Method: for each feature and candidate slot, ``(q99.5 - q0.5) / 2`` of the values that
    are not exactly zero (zeros are padding or defaults, never moved, and would shrink the
    scale of sparsely filled slots).  A slot with fewer than ``MIN_VALUES_PER_SLOT`` non-zero
    values takes the scale of the feature pooled over all slots. A feature without non-zero
    values gets 0, so it is never moved.  Integer features get 0.

    Args:
        arrays: one array per input group, shape ``[N, *group.shape]`` (e.g.
            ``DeepJetInputs.arrays()``), computed on the training set.

    Returns:
        ``{group name: float32 array of the group's per-jet shape}``, the layout stored as
        ``feature_scales`` in checkpoints.
    """
    groups = groups_for(len(arrays))
    if len(arrays[0]) == 0:
        raise ValueError("cannot compute feature scales on an empty sample")
    return {g.name: _group_scale(np.asarray(a, dtype=np.float32), g) for g, a in zip(groups, arrays)}


@dataclass(frozen=True)
class PerturbationSpace:
    """Per-input step widths, movability and bounds of a tagger's inputs, as tensors."""

    scales: Inputs
    movable: Inputs
    low: Inputs
    high: Inputs

    @classmethod
    def build(cls, scales: dict[str, np.ndarray], *, device: torch.device | str = "cpu") -> PerturbationSpace:
        """Build the space from a ``feature_scales`` dict (group name -> per-jet array)."""
        groups = groups_for(len(scales))
        missing = [g.name for g in groups if g.name not in scales]
        if missing:
            raise KeyError(f"feature scales lack the input groups {missing}; recompute them with feature_scales()")
        tensors: dict[str, list[torch.Tensor]] = {"scales": [], "movable": [], "low": [], "high": []}
        for g in groups:
            scale = np.asarray(scales[g.name], dtype=np.float32)
            if scale.shape != g.shape:
                raise ValueError(f"feature scale of group {g.name!r} has shape {scale.shape}, expected {g.shape}")
            low, high = g.bounds()
            movable = ~g.integer_mask() & (scale > 0)
            tensors["scales"].append(torch.as_tensor(scale, device=device))
            tensors["movable"].append(torch.as_tensor(movable, device=device))
            tensors["low"].append(torch.as_tensor(low, device=device))
            tensors["high"].append(torch.as_tensor(high, device=device))
        return cls(**{key: tuple(value) for key, value in tensors.items()})

    def mask(self, inputs: Inputs) -> Inputs:
        """Return the movable inputs of a batch: non-integer, non-zero and with a scale > 0."""
        return tuple((x != 0) & m for x, m in zip(inputs, self.movable))


def _broadcast_epsilon(epsilon: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor | float:
    """Shape a per-jet epsilon ``[N]`` so that it broadcasts over an input tensor."""
    if isinstance(epsilon, torch.Tensor) and epsilon.dim() == 1:
        return epsilon.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return epsilon


def apply_shift(
    inputs: Inputs,
    shifts: Inputs,
    space: PerturbationSpace,
    *,
    restrict_impact: float | None = None,
) -> Inputs:
    """Add ``shifts`` to the movable inputs, cap them and clip to the spec bounds.

    Edge cases: integer, zero and zero-scale inputs keep their value exactly; with
    ``restrict_impact`` each shift is limited to ``restrict_impact * |x|``.  Clipping to
    the spec bounds only shortens a shift, so the cap is still respected.
    """
    out = []
    for x, d, m, low, high in zip(inputs, shifts, space.mask(inputs), space.low, space.high):
        d = torch.where(m, d, torch.zeros_like(d))
        if restrict_impact is not None:
            limit = restrict_impact * x.abs()
            d = torch.maximum(torch.minimum(d, limit), -limit)
        # An input already outside the bounds may stay there, but clipping never moves it.
        shifted = torch.maximum(torch.minimum(x + d, torch.maximum(high, x)), torch.minimum(low, x))
        out.append(torch.where(m, shifted, x).detach())
    return tuple(out)


def input_gradient(
    model: nn.Module,
    inputs: Inputs,
    targets: torch.Tensor,
) -> Inputs:
    """Return the gradient of the summed cross-entropy loss with respect to every input.

    The model runs in evaluation mode (no batch-norm statistics update, no dropout) and its
    previous mode is restored afterwards; parameter gradients are left untouched.
    """
    was_training = model.training
    model.eval()
    try:
        leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
        loss = F.cross_entropy(model(*leaves), targets, reduction="sum")
        grads = torch.autograd.grad(loss, leaves)
    finally:
        model.train(was_training)
    return tuple(g.detach() for g in grads)


def fgsm(
    model: nn.Module,
    inputs: Inputs,
    targets: torch.Tensor,
    space: PerturbationSpace,
    *,
    epsilon: float | torch.Tensor,
    restrict_impact: float | None = None,
) -> Inputs:
    """Craft FGSM inputs: every movable input moves by ``epsilon * scale`` along the loss gradient sign.

    Args:
        model: differentiable tagger called as ``model(*inputs)`` returning logits.
        inputs: one tensor per input group.
        targets: true class index per jet (``int64 [N]``).
        space: scales, movable mask and bounds (:class:`PerturbationSpace`).
        epsilon: a float, or a tensor ``[N]`` with one value per jet (per-flavour epsilon).
        restrict_impact: cap of each shift as a fraction of ``|x|``; None for no cap.
    """
    grads = input_gradient(model, inputs, targets)
    shifts = tuple(_broadcast_epsilon(epsilon, x) * s * g.sign() for x, s, g in zip(inputs, space.scales, grads))
    return apply_shift(inputs, shifts, space, restrict_impact=restrict_impact)


def ngm(
    model: nn.Module,
    inputs: Inputs,
    targets: torch.Tensor,
    space: PerturbationSpace,
    *,
    epsilon: float | torch.Tensor,
    restrict_impact: float | None = None,
) -> Inputs:
    """Craft NGM inputs: the L2-normalised loss gradient with FGSM's L2 budget per jet.

    Method: with ``g`` the gradient in units of the feature scale (``dL/dx * scale``) on
    the movable inputs, the shift is ``epsilon * scale * sqrt(k) * g / ||g||_2``, with ``k``
    the number of movable inputs of the jet.  A jet whose gradient vanishes is not moved.
    Arguments as for :func:`fgsm`.
    """
    grads = input_gradient(model, inputs, targets)
    masks = space.mask(inputs)
    scaled = [torch.where(m, g * s, torch.zeros_like(g)) for g, s, m in zip(grads, space.scales, masks)]
    norm_sq = sum(t.flatten(1).pow(2).sum(1) for t in scaled)
    count = sum(m.flatten(1).sum(1) for m in masks).to(norm_sq.dtype)
    factor = torch.where(norm_sq > 0, count.sqrt() / norm_sq.clamp_min(1e-30).sqrt(), torch.zeros_like(norm_sq))
    shifts = []
    for x, t, s in zip(inputs, scaled, space.scales):
        per_jet = factor.view(-1, *([1] * (x.dim() - 1)))
        shifts.append(_broadcast_epsilon(epsilon, x) * s * t * per_jet)
    return apply_shift(inputs, tuple(shifts), space, restrict_impact=restrict_impact)


def pgd(
    model: nn.Module,
    inputs: Inputs,
    targets: torch.Tensor,
    space: PerturbationSpace,
    *,
    epsilon: float | torch.Tensor,
    steps: int = 5,
    step_size: float | None = None,
    restrict_impact: float | None = None,
) -> Inputs:
    """Craft PGD inputs: ``steps`` sign-gradient steps projected into the ``epsilon * scale`` box.

    Method: Madry et al. (arXiv:1706.06083) without random start.  ``step_size`` is in
    units of the feature scale and defaults to ``2.5 * epsilon / steps``.  After every step
    the total shift is projected back into ``[-epsilon * scale, epsilon * scale]``, then
    capped and clipped as in :func:`apply_shift`.
    """
    if steps < 1:
        raise ValueError(f"PGD needs at least one step, got steps={steps}")
    if step_size is None:
        step_size = 2.5 * float(epsilon if not isinstance(epsilon, torch.Tensor) else epsilon.max()) / steps
    current = tuple(x.detach() for x in inputs)
    for _ in range(steps):
        grads = input_gradient(model, current, targets)
        total = []
        for x0, x, s, g in zip(inputs, current, space.scales, grads):
            box = _broadcast_epsilon(epsilon, x0) * s
            delta = (x - x0) + step_size * s * g.sign()
            total.append(torch.maximum(torch.minimum(delta, box), -box))
        current = apply_shift(inputs, tuple(total), space, restrict_impact=restrict_impact)
    return current


def gaussian_noise(
    inputs: Inputs,
    space: PerturbationSpace,
    *,
    sigma: float,
    generator: torch.Generator | None = None,
    restrict_impact: float | None = None,
) -> Inputs:
    """Smear every movable input with Gaussian noise of width ``sigma * scale``."""
    shifts = tuple(
        sigma * s * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        for x, s in zip(inputs, space.scales)
    )
    return apply_shift(inputs, shifts, space, restrict_impact=restrict_impact)


def coherent_shift(
    inputs: Inputs,
    space: PerturbationSpace,
    *,
    epsilon: float,
    restrict_impact: float | None = None,
) -> Inputs:
    """Shift every movable input by ``+epsilon * scale`` (use a negative epsilon to shift down)."""
    shifts = tuple(epsilon * s.expand_as(x) for x, s in zip(inputs, space.scales))
    return apply_shift(inputs, shifts, space, restrict_impact=restrict_impact)


GradientAttack = Callable[..., Inputs]

#: Gradient attacks by name, as the command line spells them.
GRADIENT_ATTACKS: dict[str, GradientAttack] = {"fgsm": fgsm, "ngm": ngm, "pgd": pgd}
