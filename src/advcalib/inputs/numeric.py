"""Vectorised numeric helpers shared by the DeepJet input builders.

They reproduce the small functions of CMSSW's ``RecoBTag/FeatureTools`` (``deep_helpers``,
``sorting_modules``) on flat numpy arrays, so that no Python loop runs over jets.
"""

from __future__ import annotations

import numpy as np

#: CMSSW's ``catch_infs`` also treats values beyond this magnitude as infinite.
_HUGE = 1e32


def catch_infs(values: np.ndarray, *, replace: float) -> np.ndarray:
    """Replace NaN, infinite and ``|x| > 1e32`` values by ``replace`` (CMSSW ``catch_infs``)."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values) | (np.abs(values) > _HUGE)
    return np.where(bad, replace, values)


def catch_infs_and_bound(
    values: np.ndarray, *, replace: float, low: float, high: float, offset: float = 0.0
) -> np.ndarray:
    """Vectorised CMSSW ``catch_infs_and_bound``: add ``offset``, then clip to ``[low, high]``.

    Non-finite inputs first become ``replace`` (before the offset is added), exactly as in
    ``RecoBTag/FeatureTools/src/deep_helpers.cc``.
    """
    return np.clip(catch_infs(values, replace=replace) + offset, low, high)


def delta_phi(phi1: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """``phi1 - phi2`` wrapped into ``[-pi, pi)``."""
    return (np.asarray(phi1, dtype=np.float64) - phi2 + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Distance in the (eta, phi) plane."""
    return np.hypot(np.asarray(eta1, dtype=np.float64) - eta2, delta_phi(phi1, phi2))


def descending_key(values: np.ndarray) -> np.ndarray:
    """Key for an ascending sort that orders ``values`` like CMSSW's ``compareByABCInv``.

    CMSSW's ``SortingClass`` ranks every finite value above every non-finite one, so in a
    descending sort NaN and infinities come last; NaN keys go last in numpy's ascending sort.
    """
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), -values, np.nan)


def rank_within_groups(group: np.ndarray, *sort_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by ``group`` then by ``sort_keys`` (ascending, first key most significant).

    Returns the permutation and the rank of each permuted row inside its group (0, 1, ...).
    """
    group = np.asarray(group)
    if group.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    # np.lexsort sorts by its last key first.
    order = np.lexsort(tuple(reversed(sort_keys)) + (group,)) if sort_keys else np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    lengths = np.diff(np.r_[starts, sorted_group.size])
    rank = np.arange(sorted_group.size) - np.repeat(starts, lengths)
    return order, rank


def scatter_slots(
    rows: np.ndarray, rank: np.ndarray, features: np.ndarray, *, n_rows: int, slots: int
) -> np.ndarray:
    """Place per-object ``features`` [M, F] into a zero-padded [n_rows, slots, F] float32 array.

    Objects with ``rank >= slots`` are dropped (CMSSW truncation); empty slots stay 0.
    """
    out = np.zeros((n_rows, slots, features.shape[1]), dtype=np.float32)
    keep = rank < slots
    out[rows[keep], rank[keep]] = features[keep]
    return out


def count_per_row(rows: np.ndarray, *, n_rows: int) -> np.ndarray:
    """Number of objects that belong to each row."""
    return np.bincount(np.asarray(rows, dtype=np.int64), minlength=n_rows)[:n_rows]
