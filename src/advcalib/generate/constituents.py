"""Jet constituents: particle-flow candidates with momenta, directions and track parameters.

Per jet the generator draws fragmentation tracks, heavy-hadron decay tracks, photons,
neutral hadrons and pileup tracks. Multiplicities grow with the logarithm of the jet pt,
gluon jets have 30 % more constituents than quark jets, and b (c) hadrons decay into about
4.3 (2.3) charged particles that share the hadron's momentum fraction ``z``.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate import kinematics as kin
from advcalib.generate.jets import knob_per_jet
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.table import Table, gamma2, random_sign, segment_rank
from advcalib.generate.tracks import add_track_parameters

FRAGMENTATION, DECAY, PHOTON, NEUTRAL_HADRON, PILEUP = 0, 1, 2, 3, 4
PION_MASS, MUON_MASS, ELECTRON_MASS = 0.13957, 0.10566, 0.000511
#: Share of the hadron momentum carried by its charged decay products.
CHARGED_DECAY_SHARE = 0.7


def _multiplicities(rng: np.random.Generator, jets: Table, npv: np.ndarray, mismodeling: Mismodeling | None) -> dict[int, np.ndarray]:
    flav = jets["hadron_flavour"]
    gluon = np.abs(jets["parton_flavour"]) == 21
    scale = knob_per_jet(mismodeling, "track_multiplicity", flav) * np.where(gluon, 1.3, 1.0)
    base = np.clip(2.6 + 2.4 * np.log(jets["raw_pt"] / 12.0), 1.0, None) * scale
    n_decay = np.select([flav == 5, flav == 4], [2 + rng.poisson(2.3, len(flav)), 1 + rng.poisson(1.3, len(flav))], 0)
    n_decay = np.where((flav == 0) & (jets["lepton_flavour"] > 0), 1, n_decay)
    n_frag = rng.poisson(base * (1.0 - 0.5 * jets["z"]))
    n_neutral = rng.poisson(0.95 * base)
    n_photon = rng.binomial(n_neutral, 0.7)
    n_pileup = rng.poisson(0.03 * npv[jets["event"]])
    return {FRAGMENTATION: n_frag, DECAY: n_decay, PHOTON: n_photon, NEUTRAL_HADRON: n_neutral - n_photon, PILEUP: n_pileup}


def _layout(counts: dict[int, np.ndarray]) -> Table:
    jet_parts, kind_parts, rank_parts = [], [], []
    for kind, n in counts.items():
        jet = np.repeat(np.arange(len(n)), n)
        jet_parts.append(jet)
        kind_parts.append(np.full(len(jet), kind, dtype=np.int8))
        starts = np.repeat(np.cumsum(n) - n, n)
        rank_parts.append(np.arange(len(jet)) - starts)
    return Table(jet=np.concatenate(jet_parts), kind=np.concatenate(kind_parts), rank=np.concatenate(rank_parts))


def _pt_shares(rng: np.random.Generator, cands: Table, jets: Table) -> np.ndarray:
    """Momentum share of each candidate in its jet: decay products share ``D``, the rest ``1 - D``."""
    kind, jet = cands["kind"], cands["jet"]
    n_jets = len(jets)
    is_lepton = (kind == DECAY) & (cands["rank"] == 0) & (jets["lepton_flavour"][jet] > 0)
    lepton_share = jets["lepton_fraction"]
    has_decay = np.bincount(jet[kind == DECAY], minlength=n_jets) > 0
    decay_total = np.where(has_decay, np.maximum(CHARGED_DECAY_SHARE * jets["z"], lepton_share + 0.1 * jets["z"]), 0.0)
    decay_total = np.where((jets["hadron_flavour"] == 0) & has_decay, lepton_share, decay_total)
    other_decay = np.maximum(decay_total - np.where(jets["lepton_flavour"] > 0, lepton_share, 0.0), 0.0)
    # Gamma weights: shape 2 for decay products, 0.7 for fragmentation; leptons and pileup get 0.
    decay_products = np.flatnonzero((kind == DECAY) & ~is_lepton)
    fragments = np.flatnonzero((kind != DECAY) & (kind != PILEUP))
    decay_weight = gamma2(rng, len(decay_products))
    fragment_weight = rng.gamma(0.7, 1.0, len(fragments))
    decay_jet, fragment_jet = jet[decay_products], jet[fragments]
    frag_sum = np.bincount(fragment_jet, fragment_weight, minlength=n_jets)
    decay_sum = np.bincount(decay_jet, decay_weight, minlength=n_jets)
    share = np.zeros(len(kind))
    share[fragments] = fragment_weight * ((1.0 - decay_total) / np.maximum(frag_sum, 1e-12))[fragment_jet]
    share[decay_products] = decay_weight * (other_decay / np.maximum(decay_sum, 1e-12))[decay_jet]
    leptons = np.flatnonzero(is_lepton)
    share[leptons] = lepton_share[jet[leptons]]
    cands["is_lepton"] = is_lepton
    return share


def _directions(rng: np.random.Generator, cands: Table, jets: Table) -> None:
    """Angles to the jet axis: Rayleigh spread for fragmentation, decay cone around the hadron."""
    jet, kind = cands["jet"], cands["kind"]
    n = len(jet)
    jet_eta, jet_phi = jets["eta"][jet], jets["phi"][jet]
    decay = np.flatnonzero(kind == DECAY)
    other = np.flatnonzero(kind != DECAY)

    # Mean transverse momentum of the decay products in the hadron frame, in GeV.
    decay_jet = jet[decay]
    decay_flavour = jets["hadron_flavour"][decay_jet]
    pstar = np.where(decay_flavour == 5, 0.8, np.where(decay_flavour == 4, 0.45, 0.2))
    momentum = np.maximum(cands["pt"][decay], 0.2) * np.cosh(jet_eta[decay])
    decay_angle = np.minimum(pstar * np.sqrt(1 - rng.random(len(decay)) ** 2) / momentum, 0.35)
    cands["decay_angle"] = np.zeros(n)
    cands["decay_angle"][decay] = decay_angle
    hadron_offset = rng.rayleigh(0.012, len(jets))[decay_jet]

    other_pt = cands["pt"][other]
    gluon = np.abs(jets["parton_flavour"][jet[other]]) == 21
    spread = (0.025 + 0.11 / np.sqrt(np.maximum(other_pt, 0.3))) * (1.0 + 0.25 * gluon)
    spread[kind[other] == PILEUP] = 0.2

    d_r = np.empty(n)
    d_r[decay] = np.sqrt(decay_angle**2 + hadron_offset**2)
    d_r[other] = rng.rayleigh(spread)
    wide = np.flatnonzero(d_r > 0.4)
    d_r[wide] = rng.uniform(0.0, 0.4, len(wide))

    # Direction psi uniform in [-pi, pi): sin(psi) has the sign of psi, so one cosine gives both.
    psi = rng.uniform(-np.pi, np.pi, n)
    cos_psi = np.cos(psi)
    sin_psi = np.copysign(np.sqrt(1.0 - cos_psi**2), psi)
    cands["delta_r"] = d_r
    cands["eta"] = jet_eta + d_r * cos_psi
    cands["phi"] = kin.wrap_phi(jet_phi + d_r * sin_psi)

    lepton = np.flatnonzero(cands["is_lepton"])
    lepton_jet = jet[lepton]
    cands["eta"][lepton] = jets["lepton_eta"][lepton_jet]
    cands["phi"][lepton] = jets["lepton_phi"][lepton_jet]
    cands["delta_r"][lepton] = np.hypot(cands["eta"][lepton] - jet_eta[lepton],
                                        kin.delta_phi(cands["phi"][lepton], jet_phi[lepton]))


def _identities(rng: np.random.Generator, cands: Table, jets: Table) -> None:
    kind, jet = cands["kind"], cands["jet"]
    n = len(kind)
    charged = (kind == FRAGMENTATION) | (kind == DECAY) | (kind == PILEUP)
    charge = np.zeros(n, dtype=np.int64)
    charge[charged] = random_sign(rng, int(np.count_nonzero(charged)))
    lepton = np.flatnonzero(cands["is_lepton"])
    charge[lepton] = jets["lepton_charge"][jet[lepton]]
    flavour = jets["lepton_flavour"][jet[lepton]]
    # pdgId 13 is mu-, 11 is e-, 211 is pi+.
    pdg = np.where(charged, 211 * charge, np.where(kind == PHOTON, 22, 130))
    pdg[lepton] = -flavour * charge[lepton]
    mass = np.where(charged, PION_MASS, 0.0)
    mass[lepton] = np.where(flavour == 13, MUON_MASS, ELECTRON_MASS)
    cands.update(charge=charge.astype(np.int32), pdgId=pdg.astype(np.int32), mass=mass, charged=charged)


def build_constituents(rng: np.random.Generator, jets: Table, npv: np.ndarray, mismodeling: Mismodeling | None) -> Table:
    """Candidates of every jet, sorted by jet and by descending pt inside a jet."""
    cands = _layout(_multiplicities(rng, jets, npv, mismodeling))
    share = _pt_shares(rng, cands, jets)
    cands["pt"] = share * jets["raw_pt"][cands["jet"]]
    pileup = np.flatnonzero(cands["kind"] == PILEUP)
    cands["pt"][pileup] = 0.5 + rng.exponential(0.8, len(pileup))
    keep = np.flatnonzero(cands["pt"] > 0.05)
    cands = cands.take(keep[segment_rank(cands["jet"][keep], cands["pt"][keep])])
    _directions(rng, cands, jets)
    _identities(rng, cands, jets)
    add_track_parameters(rng, cands, jets, mismodeling)
    return cands
