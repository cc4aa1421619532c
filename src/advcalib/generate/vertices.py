"""Secondary vertices: reconstructed heavy-hadron decays and fake vertices.

A b (c) hadron with at least two charged decay products gives a vertex with probability
0.66 (0.35) times ``1 - exp(-L / 300 um)``. The vertex mass reaches about 5 GeV for b and
stays below about 2 GeV for c. Every jet can also carry a fake vertex (V0 decays, material
interactions, random track pairs): 6 % of light jets and 3 % of heavy-flavour jets at 30 GeV
in the simulation, rising with the logarithm of the jet pt, with masses mostly below 1.5 GeV (30 % at the K0s mass) and small flight
significances.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate import kinematics as kin
from advcalib.generate.jets import knob_per_jet
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.table import Table, segment_rank

VERTEX_EFFICIENCY = {5: 0.66, 4: 0.35}
FAKE_RATE = {0: 0.06, 4: 0.03, 5: 0.03}
K0S_MASS = 0.4976


def _real_vertices(rng: np.random.Generator, jets: Table, n_decay: np.ndarray) -> Table:
    flav = jets["hadron_flavour"]
    eff = np.select([flav == 5, flav == 4], [VERTEX_EFFICIENCY[5], VERTEX_EFFICIENCY[4]], 0.0)
    eff = eff * (1.0 - np.exp(-jets["decay_length"] / 0.03))
    idx = np.flatnonzero((n_decay >= 2) & (rng.random(len(flav)) < eff))
    n = len(idx)
    f = flav[idx]
    ntracks = np.minimum(n_decay[idx], 2 + rng.binomial(np.maximum(n_decay[idx] - 2, 0), 0.6))
    mass = np.where(f == 5, 0.4 + 4.9 * rng.beta(2.0, 2.6, n), 0.3 + 1.8 * rng.beta(2.2, 2.4, n))
    mass = mass * (0.85 + 0.05 * ntracks)
    length = jets["decay_length"][idx]
    pt = jets["z"][idx] * jets["raw_pt"][idx] * 0.7 * ntracks / np.maximum(n_decay[idx], 1) * rng.uniform(0.8, 1.1, n)
    sigma = 0.006 + 0.03 * length
    return Table(jet=idx, mass=mass, pt=pt, ntracks=ntracks, length=length + sigma * rng.standard_normal(n),
                 sigma=sigma, spread=rng.rayleigh(0.02, n), cos_spread=rng.rayleigh(0.01, n), real=np.ones(n, bool))


def _fake_vertices(rng: np.random.Generator, jets: Table, mismodeling: Mismodeling | None) -> Table:
    flav = jets["hadron_flavour"]
    rate = np.select([flav == 5, flav == 4], [FAKE_RATE[5], FAKE_RATE[4]], FAKE_RATE[0])
    rate = rate * np.clip(1.0 + 0.4 * np.log(jets["raw_pt"] / 30.0), 0.5, 2.5)
    rate = rate * knob_per_jet(mismodeling, "fake_vertex_rate", flav)
    idx = np.flatnonzero(rng.random(len(flav)) < rate)
    n = len(idx)
    k0s = rng.random(n) < 0.3
    mass = np.where(k0s, rng.normal(K0S_MASS, 0.008, n), 0.25 + rng.gamma(2.0, 0.3, n))
    ntracks = np.where(rng.random(n) < 0.85, 2, 3)
    length = np.where(k0s, rng.exponential(1.5, n), rng.exponential(0.03, n))
    sigma = 0.01 + 0.03 * length
    return Table(jet=idx, mass=np.clip(mass, 0.2, 6.0), pt=jets["raw_pt"][idx] * rng.uniform(0.03, 0.25, n),
                 ntracks=ntracks, length=length + sigma * rng.standard_normal(n), sigma=sigma,
                 spread=rng.rayleigh(0.08, n), cos_spread=rng.rayleigh(0.08, n), real=np.zeros(n, bool))


def build_vertices(rng: np.random.Generator, jets: Table, cands: Table, mismodeling: Mismodeling | None) -> Table:
    """Secondary vertices of all jets, sorted by jet and by descending 3D flight significance."""
    n_decay = np.bincount(cands["jet"][cands["kind"] == 1], minlength=len(jets))
    svs = Table.concat([_real_vertices(rng, jets, n_decay), _fake_vertices(rng, jets, mismodeling)])
    n = len(svs["jet"])
    jet = svs["jet"]
    svs["mass"] = svs["mass"] * knob_per_jet(mismodeling, "sv_mass_scale", jets["hadron_flavour"][jet])
    psi = rng.uniform(-np.pi, np.pi, n)
    svs["eta"] = jets["eta"][jet] + svs["spread"] * np.cos(psi)
    svs["phi"] = kin.wrap_phi(jets["phi"][jet] + svs["spread"] * np.sin(psi))
    d3d = np.abs(svs["length"])
    svs["d3d"] = d3d
    svs["d3dsig"] = d3d / svs["sigma"]
    svs["dxy"] = d3d / np.cosh(svs["eta"])
    svs["dxysig"] = svs["dxy"] / (svs["sigma"] / np.sqrt(np.cosh(svs["eta"])))
    svs["costhetasvpv"] = np.cos(np.minimum(svs["cos_spread"], np.pi / 2))
    ndof = 2.0 * svs["ntracks"] - 3.0
    svs["ndof"] = ndof
    svs["chi2"] = rng.gamma(ndof / 2.0, 2.0) * np.where(svs["real"], 1.0, 1.8)
    svs["normchi2"] = svs["chi2"] / ndof
    svs["deltaR"] = np.hypot(svs["eta"] - jets["eta"][jet], kin.delta_phi(svs["phi"], jets["phi"][jet]))
    svs["phirel"] = kin.delta_phi(svs["phi"], jets["phi"][jet])
    svs["ptrel"] = svs["pt"] / jets["raw_pt"][jet]
    svs["enratio"] = svs["pt"] * np.cosh(svs["eta"]) / (jets["raw_pt"][jet] * np.cosh(jets["eta"][jet]))
    svs["ntracks"] = svs["ntracks"].astype(np.int32)
    return svs.take(segment_rank(jet, svs["d3dsig"]))
