"""Reconstructed jets from partons, and the heavy-hadron decays decided before their contents.

The decay decisions (hadron momentum fraction, decay length, semileptonic lepton and its
kinematics) are made here, before constituents are built, so a generator filter on soft
muons can drop events early and cheaply.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate import kinematics as kin
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.processes import Partons
from advcalib.generate.table import Table, random_sign, segment_rank

JET_PT_MIN = 15.0
JET_ABSETA_MAX = 2.5

#: Hadron mass in GeV, proper decay length c*tau in cm and decay momentum p* in GeV.
B_HADRON = {"mass": 5.28, "ctau": 0.0455, "pstar": 1.6}
C_HADRON_MASS = 1.87
#: Charm hadron species: (fraction, c*tau in cm) of D0, D+, Ds, Lambda_c.
C_HADRON_LIFETIMES = ((0.55, 0.0123), (0.25, 0.0312), (0.12, 0.0151), (0.08, 0.0060))

#: Probability of a muon and of an electron inside the jet, per hadronFlavour. b: direct
#: plus cascade semileptonic decays; c: c -> l X; light: decays in flight and conversions.
SOFT_MUON_RATE = {5: 0.20, 4: 0.10, 0: 0.005}
SOFT_ELECTRON_RATE = {5: 0.20, 4: 0.10, 0: 0.008}
#: Fraction of b-jet leptons from the cascade b -> c -> l, which flips the lepton charge.
CASCADE_FRACTION = 0.45

#: Fraction of heavy-flavour jets whose hadron carries a small momentum fraction.
SOFT_FRAGMENTATION = 0.3

MUON_PT_MIN, MUON_ABSETA_MAX = 3.0, 2.4
ELECTRON_PT_MIN, ELECTRON_ABSETA_MAX = 5.0, 2.5


def knob_per_jet(mismodeling: Mismodeling | None, name: str, hadron_flavour: np.ndarray) -> np.ndarray:
    """Factor ``1 + knob`` of each jet for its flavour; all ones for simulation (``None``)."""
    if mismodeling is None:
        return np.ones(len(hadron_flavour))
    return np.select(
        [hadron_flavour == 5, hadron_flavour == 4],
        [mismodeling.b.factor(name), mismodeling.c.factor(name)],
        mismodeling.light.factor(name),
    )


def _by_flavour(table: dict[int, float], hadron_flavour: np.ndarray) -> np.ndarray:
    return np.select([hadron_flavour == 5, hadron_flavour == 4], [table[5], table[4]], table[0])


def reco_jets(rng: np.random.Generator, partons: Partons, mismodeling: Mismodeling | None) -> Table:
    """Smear partons into reconstructed jets, keep pt > 15 GeV and |eta| < 2.5, sort by pt per event.

    The jet energy response is Gaussian with a stochastic and a constant term. Jets with a
    semileptonic decay lose the neutrino, so they respond 7 % lower. ``mismodeling``
    (pseudo-data only) scales the response per flavour through ``jet_energy_scale``.
    """
    jets = Table(
        event=partons.event, eta=partons.eta + rng.normal(0, 0.01, len(partons.pt)),
        phi=kin.wrap_phi(partons.phi + rng.normal(0, 0.01, len(partons.pt))),
        hadron_flavour=partons.hadron_flavour, parton_flavour=partons.parton_flavour,
        quark_sign=partons.quark_sign, parton_pt=partons.pt,
    )
    _decide_decays(rng, jets, mismodeling)
    resolution = np.sqrt(0.06**2 + 1.0 / np.maximum(partons.pt, 1.0))
    response = rng.normal(1.0, resolution) * np.where(jets["lepton_flavour"] > 0, 0.93, 1.0)
    jets["pt"] = partons.pt * np.clip(response, 0.3, None) * knob_per_jet(mismodeling, "jet_energy_scale", jets["hadron_flavour"])
    keep = np.flatnonzero((jets["pt"] > JET_PT_MIN) & (np.abs(jets["eta"]) < JET_ABSETA_MAX))
    jets = jets.take(keep[segment_rank(jets["event"][keep], jets["pt"][keep])])
    jets["raw_factor"] = 1.0 - 1.0 / rng.uniform(1.03, 1.15, len(jets))
    jets["raw_pt"] = jets["pt"] * (1.0 - jets["raw_factor"])
    _place_leptons(rng, jets)
    return jets


def _decide_decays(rng: np.random.Generator, jets: Table, mismodeling: Mismodeling | None) -> None:
    """Add hadron momentum fraction, decay length and semileptonic lepton choice to ``jets``.

    Random numbers are drawn only for the jets that use them (heavy-flavour jets for the
    hadron, jets with a lepton for its momentum fraction), because most jets are light.
    Light jets without a lepton get ``lepton_fraction`` 0, which nothing reads.
    """
    n = len(jets["event"])
    flav = jets["hadron_flavour"]
    heavy = np.flatnonzero(flav > 0)
    is_b = flav[heavy] == 5
    # Hard fragmentation, softened in 30 % of the jets (gluon splitting, hard radiation):
    # Beta(7, 3) / Beta(3, 4) for b and Beta(4, 3.3) / Beta(2.5, 4.5) for c hadrons.
    soft = rng.random(len(heavy)) < SOFT_FRAGMENTATION
    alpha = np.where(soft, np.where(is_b, 3.0, 2.5), np.where(is_b, 7.0, 4.0))
    beta = np.where(soft, np.where(is_b, 4.0, 4.5), np.where(is_b, 3.0, 3.3))
    z = np.zeros(n)
    z[heavy] = rng.beta(alpha, beta)
    mass = np.where(flav == 5, B_HADRON["mass"], C_HADRON_MASS)
    ctau = np.where(is_b, B_HADRON["ctau"], _charm_lifetimes(rng, len(heavy)))
    momentum = np.maximum(z[heavy] * jets["parton_pt"][heavy] * np.cosh(jets["eta"][heavy]), 0.1)
    decay_length = np.zeros(n)
    decay_length[heavy] = rng.exponential(1.0, len(heavy)) * ctau * momentum / mass[heavy]
    p_mu = _by_flavour(SOFT_MUON_RATE, flav) * knob_per_jet(mismodeling, "soft_muon_rate", flav)
    p_e = _by_flavour(SOFT_ELECTRON_RATE, flav)
    u = rng.random(n)
    lepton = np.where(u < p_mu, 13, np.where(u < p_mu + p_e, 11, 0))
    b_jets = heavy[is_b]
    cascade = np.zeros(n, dtype=bool)
    cascade[b_jets] = rng.random(len(b_jets)) < CASCADE_FRACTION
    # Direct b -> c l- and c -> s l+ give a lepton with the quark's sign times (-1 for b, +1 for c);
    # the cascade b -> c -> s l+ flips it. Light-jet leptons have random charges.
    sign_b = np.where(cascade, 1, -1)
    charge = np.where(flav == 5, sign_b * jets["quark_sign"], np.where(flav == 4, jets["quark_sign"], 0))
    unsigned = np.flatnonzero(charge == 0)
    charge[unsigned] = random_sign(rng, len(unsigned))
    fraction = np.zeros(n)
    fraction[heavy] = z[heavy] * rng.beta(2.2, 4.0, len(heavy))
    light_lepton = np.flatnonzero((flav == 0) & (lepton > 0))
    fraction[light_lepton] = rng.beta(1.3, 6.0, len(light_lepton))
    jets.update(z=z, decay_length=decay_length, hadron_mass=mass, lepton_flavour=lepton.astype(np.int32),
                lepton_charge=charge.astype(np.int32), lepton_fraction=fraction, cascade=cascade)


def _charm_lifetimes(rng: np.random.Generator, n: int) -> np.ndarray:
    fractions = [f for f, _ in C_HADRON_LIFETIMES]
    ctaus = np.array([c for _, c in C_HADRON_LIFETIMES])
    return ctaus[rng.choice(len(ctaus), size=n, p=fractions)]


def _place_leptons(rng: np.random.Generator, jets: Table) -> None:
    """Lepton pt from its fraction of the raw jet pt and a direction close to the jet axis.

    Jets without a lepton keep the jet axis as ``lepton_eta``/``lepton_phi``; nothing reads them.
    """
    pt = jets["lepton_fraction"] * jets["raw_pt"]
    with_lepton = np.flatnonzero(jets["lepton_flavour"] > 0)
    m = len(with_lepton)
    momentum = np.maximum(pt[with_lepton] * np.cosh(jets["eta"][with_lepton]), 0.5)
    spread = np.clip(np.where(jets["hadron_flavour"][with_lepton] == 5, 1.0, 0.6) / momentum, 0.005, 0.3)
    d_r = np.minimum(rng.rayleigh(spread), 0.38)
    psi = rng.uniform(-np.pi, np.pi, m)
    lepton_eta = jets["eta"].copy()
    lepton_phi = jets["phi"].copy()
    lepton_eta[with_lepton] += d_r * np.cos(psi)
    lepton_phi[with_lepton] = kin.wrap_phi(lepton_phi[with_lepton] + d_r * np.sin(psi))
    jets.update(lepton_pt=pt, lepton_eta=lepton_eta, lepton_phi=lepton_phi)
    eta_ok = np.abs(lepton_eta)
    muon = (jets["lepton_flavour"] == 13) & (pt > MUON_PT_MIN) & (eta_ok < MUON_ABSETA_MAX)
    electron = (jets["lepton_flavour"] == 11) & (pt > ELECTRON_PT_MIN) & (eta_ok < ELECTRON_ABSETA_MAX)
    jets["lepton_reconstructed"] = muon | electron


def soft_muon_filter(jets: Table, n_events: int) -> np.ndarray:
    """Boolean mask of events with at least one reconstructed muon inside a jet."""
    has = (jets["lepton_flavour"] == 13) & jets["lepton_reconstructed"]
    return np.bincount(jets["event"][has], minlength=n_events) > 0
