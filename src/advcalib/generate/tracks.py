"""Track parameters of charged candidates: impact parameters, their errors, quality flags.

Impact parameters follow from the decay: a decay product leaving the hadron's flight path
at angle ``alpha`` passes the primary vertex at ``L * sin(alpha)``, which averages to about
c*tau whatever the boost (450 um for b, 100-300 um for c hadrons). Prompt tracks have only
the resolution, a Gaussian core of ``12 um (+) 95 um GeV / pt`` in the transverse plane with
a 3 % wide tail five times broader, plus 1.5 % secondaries (V0 decays, material) with mm-scale
offsets. The stored ``PFCands_d0`` carries CMS's geometric sign: the point of closest
approach lies at ``d0 * (-sin phi, cos phi)`` from the primary vertex, so the lifetime sign
(positive when that point lies downstream along the jet axis) is
``sign(d0 * sin(phi_jet - phi_track))``, the convention of CMSSW's ``IPTools``. The 3D
lifetime-signed value is ``JetPFCands_btagSip3dVal``, with the sign of the 2D one.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate.jets import knob_per_jet
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.table import Table, random_sign

TAIL_PROBABILITY = 0.03
TAIL_WIDTH = 5.0
SECONDARY_PROBABILITY = 0.015
NEUTRAL_DEFAULT = -1.0
DECAY_KIND, PILEUP_KIND = 1, 4


def nominal_resolution(pt: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse and longitudinal impact-parameter resolution in cm as the track fit reports it."""
    pt = np.maximum(pt, 0.3)
    sigma_xy = np.hypot(0.0012, 0.0095 / pt) * (1.0 + 0.15 * np.abs(eta))
    sigma_z = np.hypot(0.0025, 0.012 / pt) * np.cosh(eta) ** 0.8
    return sigma_xy, sigma_z


def _true_impact(rng: np.random.Generator, cands: Table, jets: Table) -> tuple[np.ndarray, np.ndarray]:
    """Lifetime-signed true 2D impact parameter and decay length of each candidate in cm."""
    jet, kind = cands["jet"], cands["kind"]
    n = len(jet)
    flav = jets["hadron_flavour"][jet]
    length = jets["decay_length"][jet]
    # Half of the b-decay tracks come from the charm daughter, which flies further.
    tertiary = (flav == 5) & (rng.random(n) < 0.5)
    charm_length = rng.exponential(0.0125 * np.maximum(jets["z"][jet] * jets["raw_pt"][jet], 1.0) / 1.87, n)
    length = length + np.where(tertiary, charm_length, 0.0)
    light_decay = (flav == 0) & (kind == DECAY_KIND)
    impact = np.where(kind == DECAY_KIND, length * np.sin(cands["decay_angle"]), 0.0)
    impact = np.where(light_decay, rng.exponential(0.004, n), impact)
    secondary = (kind != DECAY_KIND) & (rng.random(n) < SECONDARY_PROBABILITY)
    impact = np.where(secondary, rng.exponential(0.08, n) * np.where(rng.random(n) < 0.7, 1, -1), impact)
    decay_length = np.where(kind == DECAY_KIND, length, np.abs(rng.normal(0, 0.02, n)))
    decay_length = np.where(secondary, rng.exponential(1.0, n), decay_length)
    return impact, decay_length


def _scatter(n: int, index: np.ndarray, values: np.ndarray, default: float) -> np.ndarray:
    out = np.full(n, default, dtype=np.result_type(values, np.float64) if values.dtype.kind == "f" else values.dtype)
    out[index] = values
    return out


def add_track_parameters(rng: np.random.Generator, cands: Table, jets: Table, mismodeling: Mismodeling | None) -> None:
    """Add measured impact parameters, errors and track-quality columns to ``cands``.

    Neutral candidates get the NanoAOD defaults: -1 for ``d0``, ``dz``, their errors, the
    chi2 values and ``lostInnerHits``; 0 for the lifetime-signed quantities.
    """
    n_all = len(cands["jet"])
    index = np.flatnonzero(cands["charged"])
    tracks = Table({k: cands[k][index] for k in ("jet", "kind", "decay_angle", "pt", "eta", "phi")})
    n = len(index)
    flav = jets["hadron_flavour"][tracks["jet"]]
    impact, decay_length = _true_impact(rng, tracks, jets)
    sigma_xy, sigma_z = nominal_resolution(tracks["pt"], tracks["eta"])
    core = knob_per_jet(mismodeling, "ip_resolution_core", flav)
    tail = rng.random(n) < TAIL_PROBABILITY * knob_per_jet(mismodeling, "ip_resolution_tail", flav)
    smear = core * np.where(tail, TAIL_WIDTH, 1.0)
    ip_xy = impact + sigma_xy * smear * rng.standard_normal(n)
    ip_z = impact * rng.normal(0.0, 0.7, n) + sigma_z * smear * rng.standard_normal(n)
    ip_3d = np.hypot(ip_xy, ip_z)
    sigma_3d = np.sqrt((sigma_xy * ip_xy) ** 2 + (sigma_z * ip_z) ** 2) / np.maximum(ip_3d, 1e-9)
    sip_3d = np.sign(ip_xy) * ip_3d
    pileup = tracks["kind"] == PILEUP_KIND
    geometric = np.where(np.sin(jets["phi"][tracks["jet"]] - tracks["phi"]) >= 0, 1.0, -1.0)
    dz = random_sign(rng, n) * ip_z + np.where(pileup, rng.normal(0.0, 4.0, n), 0.0)
    columns = {
        "sip2d": (ip_xy, 0.0), "sip2d_sig": (ip_xy / sigma_xy, 0.0), "sip3d": (sip_3d, 0.0),
        "sip3d_sig": (sip_3d / sigma_3d, 0.0), "d0": (geometric * ip_xy, NEUTRAL_DEFAULT),
        "d0Err": (sigma_xy, NEUTRAL_DEFAULT), "dz": (dz, NEUTRAL_DEFAULT), "dzErr": (sigma_z, NEUTRAL_DEFAULT),
        "decay_length": (decay_length, 0.0), "jet_distance": (-ip_3d * rng.uniform(0.05, 0.6, n), 0.0),
    }
    columns.update(_quality(rng, n, decay_length, pileup, np.abs(ip_xy / sigma_xy) > 3))
    for name, (values, default) in columns.items():
        cands[name] = _scatter(n_all, index, values, default)
    puppi = rng.beta(6.0, 1.0, n_all)
    puppi[index] = np.where(pileup, rng.uniform(0.0, 0.08, n), 1.0)
    cands.update(puppiWeight=puppi, puppiWeightNoLep=puppi, vtxChi2=_scatter(n_all, index, np.zeros(n), -1.0))


def _quality(rng: np.random.Generator, n: int, decay_length: np.ndarray, pileup: np.ndarray, displaced: np.ndarray) -> dict:
    """Hit pattern, vertex association, quality flags and chi2 of ``n`` tracks, with their neutral defaults."""
    lost = np.where(decay_length > 4.0, rng.integers(1, 3, n), (rng.random(n) < 0.05).astype(np.int32))
    assoc = np.where(pileup, rng.integers(0, 2, n), np.where(displaced, rng.integers(4, 7, n), 7))
    quality = np.where(rng.random(n) < 0.92, 5, 1)
    chi2 = rng.gamma(2.0, 0.45, n) * np.where(rng.random(n) < TAIL_PROBABILITY, 4.0, 1.0)
    return {"lostInnerHits": (lost.astype(np.int32), -1), "pvAssocQuality": (assoc.astype(np.int32), 0),
            "trkQuality": (quality.astype(np.int32), 0), "trkChi2": (chi2, -1.0)}
