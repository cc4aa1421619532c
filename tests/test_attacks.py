"""Attacks: movable inputs, caps, budgets and that they raise the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advcalib import spec
from advcalib.attacks import (
    MIN_VALUES_PER_SLOT,
    PerturbationSpace,
    coherent_shift,
    feature_scales,
    fgsm,
    gaussian_noise,
    ngm,
    pgd,
)
from advcalib.models import DeepJet

torch.set_num_threads(1)
GROUPS = spec.DEEPJET_GROUPS


class LinearTagger(nn.Module):
    """Small differentiable stand-in for DeepJet: one linear map of all flattened inputs."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(spec.DEEPJET_N_INPUTS, len(spec.DEEPJET_CLASSES))

    def forward(self, glob, cpf, npf, sv):  # noqa: ANN001, ANN201
        return self.linear(torch.cat([t.flatten(1) for t in (glob, cpf, npf, sv)], dim=1))


def make_inputs(n: int, *, seed: int = 0, zero_fraction: float = 0.3) -> tuple[np.ndarray, ...]:
    """Random DeepJet-shaped inputs with integer-valued integer features and exact zeros."""
    rng = np.random.default_rng(seed)
    arrays = []
    for group in GROUPS:
        values = rng.normal(0.0, 2.0, size=(n, *group.shape)).astype(np.float32)
        integer = group.integer_mask()
        values = np.where(integer, np.round(np.abs(values) * 3), values).astype(np.float32)
        values[rng.random(values.shape) < zero_fraction] = 0.0
        arrays.append(values)
    return tuple(arrays)


def as_tensors(arrays: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a.copy()) for a in arrays)


@pytest.fixture(scope="module")
def space() -> PerturbationSpace:
    return PerturbationSpace.build(feature_scales(make_inputs(400, seed=1)))


def loss_of(model: nn.Module, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(*inputs), targets))


def test_feature_scales_known_answer():
    n = 1000
    arrays = [np.zeros((n, *g.shape), dtype=np.float32) for g in GROUPS]
    # Evenly spaced values a + 0.01 i: with linear interpolation q_p = a + 0.01 (n - 1) p / 100,
    # so (q99.5 - q0.5) / 2 = 0.01 * 999 * 0.99 / 2 = 4.94505.
    arrays[0][:, GROUPS[0].index("jet_pt")] = np.linspace(0.0, 10.0, n, endpoint=False) + 0.005
    arrays[0][:, GROUPS[0].index("nCpfcand")] = np.arange(n)
    scales = feature_scales(arrays)
    assert scales["global"][GROUPS[0].index("jet_pt")] == pytest.approx(4.94505, rel=1e-5)
    assert scales["global"][GROUPS[0].index("nCpfcand")] == 0.0
    assert scales["charged"].shape == spec.CHARGED.shape
    assert np.all(scales["charged"] == 0.0)


def test_feature_scales_sparse_slot_uses_pooled_scale():
    n = 2000
    arrays = [np.zeros((n, *g.shape), dtype=np.float32) for g in GROUPS]
    column = spec.CHARGED.index("Cpfcan_BtagPf_trackSip2dVal")
    arrays[1][:, 0, column] = np.linspace(-1.0, 1.0, n)
    arrays[1][: MIN_VALUES_PER_SLOT - 1, 24, column] = 100.0
    scales = feature_scales(arrays)["charged"]
    values = arrays[1][:, :, column]
    nonzero = values[values != 0]
    pooled = (np.percentile(nonzero, 99.5) - np.percentile(nonzero, 0.5)) / 2
    # Slot 0 alone: evenly spaced on [-1, 1], so (q99.5 - q0.5) / 2 = 0.99.
    assert scales[0, column] == pytest.approx(0.99, rel=1e-5)
    assert scales[24, column] == pytest.approx(pooled, rel=1e-5)
    assert scales[5, column] == pytest.approx(pooled, rel=1e-5)


def test_feature_scales_rejects_empty_sample():
    with pytest.raises(ValueError, match="empty"):
        feature_scales([np.zeros((0, *g.shape), dtype=np.float32) for g in GROUPS])


def test_space_rejects_wrong_shape():
    scales = {g.name: np.ones(g.shape, dtype=np.float32) for g in GROUPS}
    scales["vertex"] = np.ones((3, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="vertex"):
        PerturbationSpace.build(scales)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    epsilon=st.floats(0.001, 0.5),
    cap=st.one_of(st.none(), st.floats(0.01, 1.0)),
    method=st.sampled_from(["fgsm", "ngm", "pgd"]),
)
def test_gradient_attack_invariants(space, seed, epsilon, cap, method):
    inputs = as_tensors(make_inputs(16, seed=seed))
    targets = torch.as_tensor(np.random.default_rng(seed).integers(0, 6, 16))
    attack = {"fgsm": fgsm, "ngm": ngm, "pgd": pgd}[method]
    moved = attack(LinearTagger(seed), inputs, targets, space, epsilon=epsilon, restrict_impact=cap)
    for group, x, x_adv, scale in zip(GROUPS, inputs, moved, space.scales):
        fixed = (x == 0) | torch.as_tensor(group.integer_mask())
        assert torch.equal(x_adv[fixed], x[fixed]), f"{method} moved an integer or zero input of {group.name}"
        shift = (x_adv - x).abs()
        rounding = 1e-6 * (1 + x.abs())  # float32 rounding of x + shift
        if method != "ngm":
            assert torch.all(shift <= epsilon * scale + rounding), f"{method} left the epsilon box in {group.name}"
        if cap is not None:
            assert torch.all(shift <= cap * x.abs() + rounding), f"{method} broke the impact cap in {group.name}"


def test_fgsm_moves_by_epsilon_scale(space):
    inputs = as_tensors(make_inputs(32, seed=3))
    targets = torch.zeros(32, dtype=torch.long)
    moved = fgsm(LinearTagger(), inputs, targets, space, epsilon=0.01)
    for group, x, x_adv, scale in zip(GROUPS, inputs, moved, space.scales):
        low, high = (torch.as_tensor(b) for b in group.bounds())
        inside = (x != 0) & space.movable[GROUPS.index(group)] & (x - 0.01 * scale > low) & (x + 0.01 * scale < high)
        shift = (x_adv - x).abs()
        expected = (0.01 * scale).expand_as(x)
        assert torch.allclose(shift[inside], expected[inside], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", ["fgsm", "ngm", "pgd"])
def test_attack_raises_loss(space, method):
    arrays = make_inputs(256, seed=5)
    inputs = as_tensors(arrays)
    targets = torch.as_tensor(np.random.default_rng(5).integers(0, 6, 256))
    torch.manual_seed(0)
    model = DeepJet().eval()
    attack = {"fgsm": fgsm, "ngm": ngm, "pgd": pgd}[method]
    moved = attack(model, inputs, targets, space, epsilon=0.05)
    assert loss_of(model, moved, targets) > loss_of(model, inputs, targets)


def test_attack_keeps_training_mode_and_parameter_grads(space):
    model = DeepJet().train()
    inputs = as_tensors(make_inputs(8, seed=2))
    fgsm(model, inputs, torch.zeros(8, dtype=torch.long), space, epsilon=0.01)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def inside_bounds(group: spec.InputGroup) -> np.ndarray:
    """A small non-zero value per feature, well inside the spec bounds."""
    low, high = group.bounds()
    middle = (np.maximum(low, -1e3) + np.minimum(high, 1e3)) / 2
    value = np.where((low < 0.4) & (high > 0.6), 0.5, middle)
    return np.broadcast_to(value, group.shape)


def test_ngm_spends_fgsm_l2_budget():
    # Unit scales and no bounds reached: ||delta / scale||_2 = eps * sqrt(movable inputs).
    scales = {g.name: np.ones(g.shape, dtype=np.float32) for g in GROUPS}
    space = PerturbationSpace.build(scales)
    arrays = make_inputs(4, seed=8, zero_fraction=0.0)
    arrays = tuple(np.where(g.integer_mask(), a, inside_bounds(g)).astype(np.float32) for g, a in zip(GROUPS, arrays))
    inputs = as_tensors(arrays)
    moved = ngm(LinearTagger(), inputs, torch.zeros(4, dtype=torch.long), space, epsilon=0.01)
    squared = sum(((m - x) ** 2).flatten(1).sum(1) for m, x in zip(moved, inputs))
    count = sum(((x != 0) & mv).flatten(1).sum(1) for x, mv in zip(inputs, space.movable))
    assert torch.allclose(squared.sqrt(), 0.01 * count.float().sqrt(), rtol=1e-4)


def test_per_jet_epsilon(space):
    inputs = as_tensors(make_inputs(2, seed=4, zero_fraction=0.0))
    epsilon = torch.tensor([0.0, 0.02])
    moved = fgsm(LinearTagger(), inputs, torch.zeros(2, dtype=torch.long), space, epsilon=epsilon)
    for x, x_adv in zip(inputs, moved):
        assert torch.equal(x_adv[0], x[0])
        assert not torch.equal(x_adv[1], x[1])


def test_coherent_shift_known_answer():
    scales = {g.name: np.full(g.shape, 2.0, dtype=np.float32) for g in GROUPS}
    space = PerturbationSpace.build(scales)
    arrays = [np.zeros((1, *g.shape), dtype=np.float32) for g in GROUPS]
    arrays[0][0, GROUPS[0].index("jet_pt")] = 50.0
    arrays[0][0, GROUPS[0].index("npv")] = 30.0
    arrays[3][0, 0, spec.VERTEX.index("sv_mass")] = 1.5
    up = coherent_shift(as_tensors(tuple(arrays)), space, epsilon=0.01)
    down = coherent_shift(as_tensors(tuple(arrays)), space, epsilon=-0.01, restrict_impact=0.001)
    assert float(up[0][0, GROUPS[0].index("jet_pt")]) == pytest.approx(50.02)
    assert float(up[0][0, GROUPS[0].index("npv")]) == 30.0
    assert float(up[3][0, 0, spec.VERTEX.index("sv_mass")]) == pytest.approx(1.52)
    assert float(up[3][0, 1, spec.VERTEX.index("sv_mass")]) == 0.0
    assert float(down[3][0, 0, spec.VERTEX.index("sv_mass")]) == pytest.approx(1.5 - 0.0015)


def test_gaussian_noise_keeps_fixed_inputs(space):
    inputs = as_tensors(make_inputs(64, seed=6))
    smeared = gaussian_noise(inputs, space, sigma=0.5, generator=torch.Generator().manual_seed(1))
    for group, x, x_new in zip(GROUPS, inputs, smeared):
        fixed = (x == 0) | torch.as_tensor(group.integer_mask())
        assert torch.equal(x_new[fixed], x[fixed])
        assert not torch.equal(x_new[~fixed], x[~fixed])


def test_shift_respects_spec_bounds(space):
    arrays = [np.zeros((1, *g.shape), dtype=np.float32) for g in GROUPS]
    ptrel = spec.CHARGED.index("Cpfcan_ptrel")
    arrays[1][0, 0, ptrel] = -1e-4
    up = coherent_shift(as_tensors(tuple(arrays)), space, epsilon=10.0)
    assert float(up[1][0, 0, ptrel]) == 0.0
