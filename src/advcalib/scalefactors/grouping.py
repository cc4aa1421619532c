"""Adaptive merging of histogram bins into groups that share one scale factor.

The grid is tiled by nested blocks, coarse to fine (for the 20 x 20 c-tag map: the whole
map, 4 x 4 blocks, 2 x 2 blocks, single bins). Starting from the whole grid, a block is
split into its children. Each child whose expected relative uncertainty is small enough is
split further, and the children that fail are merged into one group. So well-populated
regions of the map end up with fine bins and sparse tails with a few coarse groups, which
need not be contiguous.
"""

from __future__ import annotations

import itertools

import numpy as np


def check_levels(shape: tuple[int, ...], levels: list[tuple[int, ...]]) -> None:
    """Raise ValueError unless ``levels`` are nested block shapes tiling ``shape``, coarse to fine."""
    if not levels or tuple(levels[0]) != tuple(shape):
        raise ValueError(f"the first block level must be the whole grid {shape}, got {levels[:1]}")
    for coarse, fine in itertools.pairwise(levels):
        if len(fine) != len(shape) or any(c % f for c, f in zip(coarse, fine)):
            raise ValueError(f"block {fine} does not tile block {coarse}; use block sizes that divide each other")


def relative_uncertainty(signal: np.ndarray, variance: np.ndarray) -> float:
    """Expected relative uncertainty sqrt(sum variance) / sum signal; inf when the signal sum is <= 0."""
    total = float(signal.sum())
    return float(np.sqrt(max(float(variance.sum()), 0.0)) / total) if total > 0 else np.inf


def adaptive_groups(
    signal: np.ndarray, variance: np.ndarray, *, levels: list[tuple[int, ...]], max_relative_uncertainty: float
) -> np.ndarray:
    """Label each bin of the grid with the id of its group (0, 1, ...).

    ``signal`` is the target flavour's expected yield and ``variance`` the variance of the
    ratio's numerator and denominator together, both on the grid. A group that fails the
    criterion even after merging is kept as one group; the fit decides whether to use it.
    """
    check_levels(signal.shape, levels)
    labels = np.full(signal.shape, -1, dtype=int)
    root = tuple(slice(0, n) for n in signal.shape)
    groups = _split(signal, variance, [root], 0, levels, max_relative_uncertainty)
    for index, blocks in enumerate(groups):
        for block in blocks:
            labels[block] = index
    return labels


def _split(signal, variance, blocks, level, levels, limit) -> list[list[tuple[slice, ...]]]:
    """Groups (each a list of blocks) covering ``blocks``, a single block at level ``level``."""
    if level + 1 == len(levels) or len(blocks) != 1:
        return [blocks]
    passing: list[tuple[slice, ...]] = []
    failing: list[tuple[slice, ...]] = []
    for child in _children(blocks[0], levels[level + 1]):
        ok = relative_uncertainty(signal[child], variance[child]) <= limit
        (passing if ok else failing).append(child)
    groups: list[list[tuple[slice, ...]]] = []
    for child in passing:
        groups.extend(_split(signal, variance, [child], level + 1, levels, limit))
    if failing:
        groups.append(failing)
    return groups


def _children(block: tuple[slice, ...], size: tuple[int, ...]) -> list[tuple[slice, ...]]:
    ranges = [range(s.start, s.stop, n) for s, n in zip(block, size)]
    return [tuple(slice(start, start + n) for start, n in zip(starts, size)) for starts in itertools.product(*ranges)]


def group_sums(values: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of ``values`` over the bins of each group, length ``n_groups``."""
    return np.bincount(labels.ravel(), weights=values.ravel(), minlength=n_groups)
