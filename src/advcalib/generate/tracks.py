"""Track parameters of charged candidates: impact parameters, their errors, quality flags.

Impact parameters follow from the decay: a decay product leaving the hadron's flight path
at angle ``alpha`` passes the primary vertex at ``L * sin(alpha)``, which averages to about
c*tau whatever the boost (450 um for b, 100-300 um for c hadrons). Prompt tracks have only
the resolution, a Gaussian core of ``20 um (+) 105 um GeV / pt`` in the transverse plane
with a 5 % tail five times broader. 12 % of the tracks miss the innermost pixel hit
(``lostInnerHits`` 1) and have a three times worse resolution.

Secondaries give light jets displaced tracks too. A V0 decay adds a displaced track pair
(90 % on the downstream side) to 25 % of the jets, and 5 % of the other tracks are single
secondaries from material or decays in flight. Both have offsets of about 0.6 mm.

The stored ``PFCands_d0`` carries CMS's geometric sign: the point of closest approach lies
at ``d0 * (-sin phi, cos phi)`` from the primary vertex. The lifetime sign (positive when
that point lies downstream along the jet axis) is therefore
``sign(d0 * sin(phi_jet - phi_track))``, the convention of CMSSW's ``IPTools``. The 3D
lifetime-signed value is ``JetPFCands_btagSip3dVal``, with the sign of the 2D one.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate.jets import knob_per_jet
from advcalib.generate.kinematics import wrap_phi
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.table import Table, gamma2, random_sign

TAIL_PROBABILITY = 0.05
TAIL_WIDTH = 5.0
SECONDARY_PROBABILITY = 0.05
NEUTRAL_DEFAULT = -1.0
FRAGMENTATION_KIND, DECAY_KIND, PILEUP_KIND = 0, 1, 4
#: Probability that a jet contains a reconstructed V0 decay among its leading tracks.
V0_PROBABILITY = 0.25
#: Fraction of tracks missing the innermost pixel hit, and their resolution factor.
DEGRADED_PROBABILITY, DEGRADED_WIDTH = 0.12, 3.0


def nominal_resolution(pt: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse and longitudinal impact-parameter resolution in cm as the track fit reports it."""
    pt = np.maximum(pt, 0.3)
    # The square root of the squared sum is twice as fast as np.hypot, and no term here can overflow.
    sigma_xy = np.sqrt(0.0020**2 + (0.0105 / pt) ** 2) * (1.0 + 0.15 * np.abs(eta))
    sigma_z = np.sqrt(0.0030**2 + (0.0130 / pt) ** 2) * np.cosh(eta) ** 0.8
    return sigma_xy, sigma_z


def _true_impact(rng: np.random.Generator, cands: Table, jets: Table) -> tuple[np.ndarray, np.ndarray]:
    """Lifetime-signed true 2D impact parameter and decay length of each candidate in cm."""
    jet, kind = cands["jet"], cands["kind"]
    n = len(jet)
    decay = np.flatnonzero(kind == DECAY_KIND)
    decay_jet = jet[decay]
    decay_flavour = jets["hadron_flavour"][decay_jet]
    length = jets["decay_length"][decay_jet]
    # Half of the b-decay tracks come from the charm daughter, which flies further.
    b_decay = np.flatnonzero(decay_flavour == 5)
    tertiary = b_decay[rng.random(len(b_decay)) < 0.5]
    tertiary_jet = decay_jet[tertiary]
    charm_mean = 0.0125 * np.maximum(jets["z"][tertiary_jet] * jets["raw_pt"][tertiary_jet], 1.0) / 1.87
    length[tertiary] += rng.exponential(charm_mean)
    impact = np.zeros(n)
    impact[decay] = length * np.sin(cands["decay_angle"][decay])
    light_decay = decay[decay_flavour == 0]
    impact[light_decay] = rng.exponential(0.004, len(light_decay))
    # V0 decays (K0s, Lambda) give pairs of displaced tracks: the two leading fragmentation
    # tracks of a jet with a V0. Other secondaries (material, decays in flight) come singly.
    v0_pair = (kind == FRAGMENTATION_KIND) & (cands["rank"] < 2) & (rng.random(len(jets["event"])) < V0_PROBABILITY)[jet]
    secondary = np.flatnonzero(v0_pair | ((kind != DECAY_KIND) & (rng.random(n) < SECONDARY_PROBABILITY)))
    n_secondary = len(secondary)
    impact[secondary] = rng.exponential(0.06, n_secondary) * np.where(rng.random(n_secondary) < 0.9, 1, -1)
    decay_length = np.empty(n)
    decay_length[decay] = length
    prompt = np.flatnonzero(kind != DECAY_KIND)
    decay_length[prompt] = np.abs(rng.normal(0, 0.04, len(prompt)))
    decay_length[secondary] = rng.exponential(1.0, n_secondary)
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
    tracks = Table({k: cands[k][index] for k in ("jet", "kind", "rank", "decay_angle", "pt", "eta", "phi")})
    n = len(index)
    flav = jets["hadron_flavour"][tracks["jet"]]
    impact, decay_length = _true_impact(rng, tracks, jets)
    sigma_xy, sigma_z = nominal_resolution(tracks["pt"], tracks["eta"])
    core = knob_per_jet(mismodeling, "ip_resolution_core", flav)
    tail = rng.random(n) < TAIL_PROBABILITY * knob_per_jet(mismodeling, "ip_resolution_tail", flav)
    # Tracks without a hit in the innermost pixel layer measure the impact parameter worse.
    degraded = rng.random(n) < DEGRADED_PROBABILITY
    smear = core * (1.0 + (TAIL_WIDTH - 1.0) * tail) * (1.0 + (DEGRADED_WIDTH - 1.0) * degraded)
    ip_xy = impact + sigma_xy * smear * rng.standard_normal(n)
    ip_z = impact * rng.normal(0.0, 0.7, n) + sigma_z * smear * rng.standard_normal(n)
    ip_3d = np.sqrt(ip_xy**2 + ip_z**2)
    sigma_3d = np.sqrt((sigma_xy * ip_xy) ** 2 + (sigma_z * ip_z) ** 2) / np.maximum(ip_3d, 1e-9)
    sip_3d = np.sign(ip_xy) * ip_3d
    pileup = tracks["kind"] == PILEUP_KIND
    # sin(phi_jet - phi) >= 0 exactly when the wrapped difference is >= 0.
    geometric = np.where(wrap_phi(jets["phi"][tracks["jet"]] - tracks["phi"]) >= 0, 1.0, -1.0)
    dz = random_sign(rng, n) * ip_z
    pileup_index = np.flatnonzero(pileup)
    dz[pileup_index] += rng.normal(0.0, 4.0, len(pileup_index))
    columns = {
        "sip2d": (ip_xy, 0.0), "sip2d_sig": (ip_xy / sigma_xy, 0.0), "sip3d": (sip_3d, 0.0),
        "sip3d_sig": (sip_3d / sigma_3d, 0.0), "d0": (geometric * ip_xy, NEUTRAL_DEFAULT),
        "d0Err": (sigma_xy, NEUTRAL_DEFAULT), "dz": (dz, NEUTRAL_DEFAULT), "dzErr": (sigma_z, NEUTRAL_DEFAULT),
        "decay_length": (decay_length, 0.0), "jet_distance": (-ip_3d * rng.uniform(0.05, 0.6, n), 0.0),
    }
    columns.update(_quality(rng, n, decay_length, pileup, np.abs(ip_xy / sigma_xy) > 3, degraded))
    for name, (values, default) in columns.items():
        cands[name] = _scatter(n_all, index, values, default)
    # Neutral PUPPI weights follow Beta(6, 1), drawn by inversion as u ** (1/6).
    puppi = np.ones(n_all)
    neutral = np.flatnonzero(~cands["charged"])
    puppi[neutral] = rng.random(len(neutral)) ** (1.0 / 6.0)
    puppi[index[pileup_index]] = rng.uniform(0.0, 0.08, len(pileup_index))
    cands.update(puppiWeight=puppi, puppiWeightNoLep=puppi, vtxChi2=_scatter(n_all, index, np.zeros(n), -1.0))


def _quality(rng: np.random.Generator, n: int, decay_length: np.ndarray, pileup: np.ndarray, displaced: np.ndarray,
             degraded: np.ndarray) -> dict:
    """Hit pattern, vertex association, quality flags and chi2 of ``n`` tracks, with their neutral defaults."""
    lost = degraded.astype(np.int32)
    far = np.flatnonzero(decay_length > 4.0)
    lost[far] = rng.integers(1, 3, len(far))
    assoc = np.full(n, 7, dtype=np.int32)
    off_vertex = np.flatnonzero(displaced & ~pileup)
    assoc[off_vertex] = rng.integers(4, 7, len(off_vertex))
    pileup_index = np.flatnonzero(pileup)
    assoc[pileup_index] = rng.integers(0, 2, len(pileup_index))
    quality = np.where(rng.random(n) < 0.92, 5, 1)
    chi2 = 0.45 * gamma2(rng, n) * np.where(rng.random(n) < TAIL_PROBABILITY, 4.0, 1.0)
    return {"lostInnerHits": (lost.astype(np.int32), -1), "pvAssocQuality": (assoc.astype(np.int32), 0),
            "trkQuality": (quality.astype(np.int32), 0), "trkChi2": (chi2, -1.0)}
