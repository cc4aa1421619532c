"""Vectorised kinematics: sampling of spectra, two-body decays, Lorentz boosts.

Four-vectors are ``(px, py, pz, E)`` arrays of shape ``[N, 4]`` in GeV. All functions take a
``numpy.random.Generator`` so a seed fixes every result.
"""

from __future__ import annotations

import numpy as np

Z_MASS, Z_WIDTH = 91.1876, 2.4952
W_MASS, W_WIDTH = 80.379, 2.085
TOP_MASS, TOP_WIDTH = 172.5, 1.42
B_QUARK_MASS = 4.8
TWO_PI = 2.0 * np.pi


def power_law(rng: np.random.Generator, n: int, *, low: float, index: float, high: float = 3000.0) -> np.ndarray:
    """Sample ``n`` values of a falling spectrum ``dN/dx ~ x^-index`` on ``[low, high]`` by inversion."""
    u = rng.random(n)
    a = 1.0 - index
    return (low**a + u * (high**a - low**a)) ** (1.0 / a)


def breit_wigner(rng: np.random.Generator, n: int, *, mass: float, width: float, low: float, high: float) -> np.ndarray:
    """Sample a Cauchy (non-relativistic Breit-Wigner) line shape truncated to ``[low, high]`` by inversion of the CDF."""
    lo = np.arctan((low - mass) / (width / 2))
    hi = np.arctan((high - mass) / (width / 2))
    return mass + width / 2 * np.tan(lo + rng.random(n) * (hi - lo))


def p4_from_ptetaphim(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
    """Four-vectors ``[N, 4]`` from pt, eta, phi and mass."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + np.asarray(mass) ** 2)
    return np.stack([px, py, pz, energy], axis=-1)


def ptetaphim(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pt, eta, phi and mass of four-vectors ``[N, 4]`` (mass 0 where the square is negative)."""
    px, py, pz, energy = p4.T
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    mass = np.sqrt(np.clip(energy**2 - px**2 - py**2 - pz**2, 0.0, None))
    return pt, eta, np.arctan2(py, px), mass


def boost(p4: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Boost ``p4`` from the rest frame of ``parent`` into the frame where ``parent`` is given."""
    beta = parent[:, :3] / parent[:, 3:4]
    b2 = np.clip(np.sum(beta**2, axis=1), 0.0, 1.0 - 1e-12)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p4[:, :3], axis=1)
    coeff = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    space = p4[:, :3] + (coeff * bp + gamma * p4[:, 3])[:, None] * beta
    energy = gamma * (p4[:, 3] + bp)
    return np.concatenate([space, energy[:, None]], axis=1)


def two_body_decay(rng: np.random.Generator, parent: np.ndarray, m1: np.ndarray | float, m2: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Decay each parent isotropically in its rest frame into masses ``m1`` and ``m2``.

    Returns the two daughters' lab-frame four-vectors. A parent lighter than ``m1 + m2``
    gives daughters at rest in its frame (p* = 0) instead of failing.
    """
    n = len(parent)
    mass = np.sqrt(np.clip(parent[:, 3] ** 2 - np.sum(parent[:, :3] ** 2, axis=1), 0.0, None))
    m1 = np.broadcast_to(np.asarray(m1, dtype=float), (n,))
    m2 = np.broadcast_to(np.asarray(m2, dtype=float), (n,))
    lam = (mass**2 - (m1 + m2) ** 2) * (mass**2 - (m1 - m2) ** 2)
    pstar = np.sqrt(np.clip(lam, 0.0, None)) / (2 * np.maximum(mass, 1e-9))
    cos_t = rng.uniform(-1, 1, n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    direction = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    d1 = np.concatenate([pstar[:, None] * direction, np.sqrt(pstar**2 + m1**2)[:, None]], axis=1)
    d2 = np.concatenate([-pstar[:, None] * direction, np.sqrt(pstar**2 + m2**2)[:, None]], axis=1)
    return boost(d1, parent), boost(d2, parent)


def resonance(rng: np.random.Generator, n: int, *, mass: np.ndarray, pt_mean: float, rapidity_width: float) -> np.ndarray:
    """Four-vectors of ``n`` resonances with given masses, exponential pt and Gaussian rapidity."""
    pt = rng.exponential(pt_mean, n)
    rapidity = rng.normal(0.0, rapidity_width, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(mass**2 + pt**2)
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(rapidity), mt * np.cosh(rapidity)], axis=1)


def delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed azimuthal difference ``a - b`` wrapped into ``[-pi, pi)``."""
    return wrap_phi(a - b)


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Azimuth wrapped into ``[-pi, pi)``; rounding may map a value just below pi to about -pi.

    Uses ``floor`` instead of the float ``%``, which is several times slower in numpy.
    """
    return phi - TWO_PI * np.floor((phi + np.pi) / TWO_PI)
