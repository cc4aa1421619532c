"""Hard processes: prompt leptons, neutrinos and jet-initiating partons of each event.

Each process function samples ``n`` events and returns :class:`HardEvents`: flat arrays of
leptons and partons with the index of their event. The jet contents (tracks, vertices,
soft leptons) are added later by :mod:`advcalib.generate.jets`.

Charges follow the quark charges, which makes the opposite-sign minus same-sign (OS-SS)
subtraction work. In W+c (``s g -> W- c``, ``sbar g -> W+ cbar``) the charm quark has the
sign opposite to the W charge, so the muon of ``c -> s mu+ nu`` has the charge opposite to
the W lepton. Partons from gluon splitting and light quarks get random signs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advcalib.generate import kinematics as kin
from advcalib.generate.table import random_sign

#: Built-in cross-sections in pb of the generated phase space (13 TeV, rounded estimates:
#: V+jets with at least one parton of pt > 20 GeV and W/Z -> e, mu; ttbar with the listed
#: decays to e/mu; QCD dijets with leading pt > 30 GeV is reduced by a training filter).
CROSS_SECTIONS: dict[str, float] = {
    "dy": 1200.0,
    "wjets": 11000.0,
    "wcharm": 1100.0,
    "ttbar_semilep": 245.0,
    "ttbar_dilep": 41.0,
    "qcd": 50000.0,
}

ELECTRON, MUON = 11, 13


@dataclass
class Leptons:
    """Prompt charged leptons: event index, kinematics, charge and |pdgId| (11 or 13)."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    flavour: np.ndarray


@dataclass
class Partons:
    """Jet-initiating partons: ``hadron_flavour`` 0/4/5, signed ``parton_flavour``, quark sign."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    hadron_flavour: np.ndarray
    parton_flavour: np.ndarray
    quark_sign: np.ndarray


@dataclass
class HardEvents:
    """Hard-process content of ``n`` events; ``met_x``/``met_y`` sum the neutrinos."""

    n: int
    leptons: Leptons
    partons: Partons
    met_x: np.ndarray
    met_y: np.ndarray


def _concat(parts: list) -> object:
    cls = type(parts[0])
    return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def _leptons(event: np.ndarray, p4: np.ndarray, charge: np.ndarray, flavour: np.ndarray) -> Leptons:
    pt, eta, phi, _ = kin.ptetaphim(p4)
    return Leptons(event, pt, eta, phi, charge.astype(np.int32), flavour.astype(np.int32))


def _partons(event, pt, eta, phi, hadron_flavour, parton_flavour, quark_sign) -> Partons:
    return Partons(
        event.astype(np.int64), pt, eta, phi,
        hadron_flavour.astype(np.int32), (parton_flavour * np.where(quark_sign == 0, 1, quark_sign)).astype(np.int32),
        quark_sign.astype(np.int32),
    )


def extra_jets(rng: np.random.Generator, n: int, *, mean: float, low: float = 20.0, index: float = 3.2, at_least: int = 0) -> Partons:
    """Additional QCD radiation: a Poisson number of jets per event with a falling pt spectrum.

    Flavours: 45 % light quarks, 44 % gluons, 7 % c and 4 % b from gluon splitting, with
    random quark signs.
    """
    counts = at_least + rng.poisson(mean, n)
    event = np.repeat(np.arange(n), counts)
    m = len(event)
    pt = kin.power_law(rng, m, low=low, index=index)
    eta = rng.normal(0.0, 1.5, m)
    phi = rng.uniform(-np.pi, np.pi, m)
    kind = rng.choice(4, size=m, p=[0.45, 0.44, 0.07, 0.04])
    hadron = np.choose(kind, [0, 0, 4, 5])
    parton = np.where(kind == 0, rng.integers(1, 4, m), np.choose(kind, [1, 21, 4, 5]))
    sign = np.where(kind == 1, 0, random_sign(rng, m))
    return _partons(event, pt, eta, phi, hadron, parton, sign)


def _recoil(n: int, partons: Partons, rng: np.random.Generator, *, mass: np.ndarray, rapidity_width: float) -> np.ndarray:
    """Boson four-vectors balancing the summed transverse momentum of ``partons``."""
    px = -np.bincount(partons.event, partons.pt * np.cos(partons.phi), minlength=n) + rng.normal(0, 6.0, n)
    py = -np.bincount(partons.event, partons.pt * np.sin(partons.phi), minlength=n) + rng.normal(0, 6.0, n)
    rapidity = rng.normal(0.0, rapidity_width, n)
    mt = np.sqrt(mass**2 + px**2 + py**2)
    return np.stack([px, py, mt * np.sinh(rapidity), mt * np.cosh(rapidity)], axis=1)


def _lepton_flavours(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, ELECTRON, MUON)


def drell_yan(rng: np.random.Generator, n: int) -> HardEvents:
    """Z/gamma* -> ee or mumu (50/50) with at least one jet, m(ll) in [50, 150] GeV."""
    partons = extra_jets(rng, n, mean=0.45, at_least=1, index=3.6)
    mass = kin.breit_wigner(rng, n, mass=kin.Z_MASS, width=kin.Z_WIDTH, low=50.0, high=150.0)
    boson = _recoil(n, partons, rng, mass=mass, rapidity_width=1.6)
    flavour = _lepton_flavours(rng, n)
    lep_mass = np.where(flavour == MUON, 0.1057, 0.000511)
    l1, l2 = kin.two_body_decay(rng, boson, lep_mass, lep_mass)
    charge = random_sign(rng, n)
    event = np.arange(n)
    leptons = _concat([_leptons(event, l1, charge, flavour), _leptons(event, l2, -charge, flavour)])
    return HardEvents(n, leptons, partons, np.zeros(n), np.zeros(n))


def _w_events(rng: np.random.Generator, n: int, partons: Partons, charge: np.ndarray) -> HardEvents:
    mass = kin.breit_wigner(rng, n, mass=kin.W_MASS, width=kin.W_WIDTH, low=40.0, high=200.0)
    boson = _recoil(n, partons, rng, mass=mass, rapidity_width=1.7)
    flavour = _lepton_flavours(rng, n)
    lep, nu = kin.two_body_decay(rng, boson, np.where(flavour == MUON, 0.1057, 0.000511), 0.0)
    leptons = _leptons(np.arange(n), lep, charge, flavour)
    return HardEvents(n, leptons, partons, nu[:, 0], nu[:, 1])


def _w_charges(rng: np.random.Generator, n: int) -> np.ndarray:
    # W+ outnumbers W- at the LHC (valence u quarks): about 58 % W+.
    return np.where(rng.random(n) < 0.58, 1, -1)


def w_jets_production(rng: np.random.Generator, n: int) -> tuple[Partons, np.ndarray]:
    """Sample the partons and W charges of :func:`w_jets`, before the W decay."""
    partons = extra_jets(rng, n, mean=0.5, at_least=1, index=3.6)
    return partons, _w_charges(rng, n)


def w_jets(rng: np.random.Generator, n: int) -> HardEvents:
    """W -> e nu / mu nu with at least one jet, W+c production excluded (see :func:`w_charm`)."""
    partons, charge = w_jets_production(rng, n)
    return _w_events(rng, n, partons, charge)


def w_charm_production(rng: np.random.Generator, n: int) -> tuple[Partons, np.ndarray]:
    """Sample the partons and W charges of :func:`w_charm`, before the W decay."""
    charge = _w_charges(rng, n)
    event = np.arange(n)
    pt = kin.power_law(rng, n, low=20.0, index=3.4)
    charm = _partons(event, pt, rng.normal(0, 1.4, n), rng.uniform(-np.pi, np.pi, n),
                     np.full(n, 4), np.full(n, 4), -charge)
    return _concat([charm, extra_jets(rng, n, mean=0.4, index=3.6)]), charge


def w_charm(rng: np.random.Generator, n: int) -> HardEvents:
    """W+c: one charm jet whose quark sign is opposite to the W charge, plus radiation."""
    partons, charge = w_charm_production(rng, n)
    return _w_events(rng, n, partons, charge)


def decay_w(rng: np.random.Generator, n: int, partons: Partons, charge: np.ndarray) -> HardEvents:
    """Decay the W bosons of ``n`` events (charges ``charge``) to e nu / mu nu, recoiling against ``partons``."""
    return _w_events(rng, n, partons, charge)


#: W processes split into production (partons, W charge) and decay. The decay does not
#: change the jets, so a generator filter on jets can run before it.
W_PRODUCTION = {"wjets": w_jets_production, "wcharm": w_charm_production}


def _top_pair(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    mass = kin.breit_wigner(rng, 2 * n, mass=kin.TOP_MASS, width=kin.TOP_WIDTH, low=150.0, high=200.0)
    top = kin.resonance(rng, n, mass=mass[:n], pt_mean=95.0, rapidity_width=1.0)
    px = -top[:, 0] + rng.normal(0, 25.0, n)
    py = -top[:, 1] + rng.normal(0, 25.0, n)
    rapidity = rng.normal(0.0, 1.0, n)
    mt = np.sqrt(mass[n:] ** 2 + px**2 + py**2)
    antitop = np.stack([px, py, mt * np.sinh(rapidity), mt * np.cosh(rapidity)], axis=1)
    return top, antitop


def _w_hadronic(rng: np.random.Generator, event: np.ndarray, w: np.ndarray, charge: np.ndarray) -> Partons:
    """W -> u dbar or c sbar (50/50); the up-type quark has the sign of the W charge."""
    q1, q2 = kin.two_body_decay(rng, w, 0.0, 0.0)
    charm = rng.random(len(event)) < 0.5
    up_flavour = np.where(charm, 4, 2)
    down_flavour = np.where(charm, 3, 1)
    parts = []
    for p4, flavour, sign in ((q1, up_flavour, charge), (q2, down_flavour, -charge)):
        pt, eta, phi, _ = kin.ptetaphim(p4)
        parts.append(_partons(event, pt, eta, phi, np.where(flavour == 4, 4, 0), flavour, sign))
    return _concat(parts)


def _top_decays(rng: np.random.Generator, n: int, leptonic: tuple[np.ndarray, np.ndarray]) -> HardEvents:
    """Decay t -> b W+ and tbar -> bbar W-; ``leptonic`` flags which W decays to e/mu."""
    tops = _top_pair(rng, n)
    event = np.arange(n)
    lepton_parts, parton_parts = [], []
    met_x, met_y = np.zeros(n), np.zeros(n)
    for top, sign, is_lep in zip(tops, (1, -1), leptonic):
        w_mass = kin.breit_wigner(rng, n, mass=kin.W_MASS, width=kin.W_WIDTH, low=60.0, high=100.0)
        b, w = kin.two_body_decay(rng, top, kin.B_QUARK_MASS, w_mass)
        pt, eta, phi, _ = kin.ptetaphim(b)
        parton_parts.append(_partons(event, pt, eta, phi, np.full(n, 5), np.full(n, 5), np.full(n, sign)))
        charge = np.full(n, sign)
        flavour = _lepton_flavours(rng, n)
        lep, nu = kin.two_body_decay(rng, w, np.where(flavour == MUON, 0.1057, 0.000511), 0.0)
        sel = np.flatnonzero(is_lep)
        lepton_parts.append(_leptons(sel, lep[sel], charge[sel], flavour[sel]))
        met_x[sel] += nu[sel, 0]
        met_y[sel] += nu[sel, 1]
        had = np.flatnonzero(~is_lep)
        parton_parts.append(_w_hadronic(rng, had, w[had], charge[had]))
    parton_parts.append(extra_jets(rng, n, mean=0.6, low=20.0, index=3.4))
    return HardEvents(n, _concat(lepton_parts), _concat(parton_parts), met_x, met_y)


def ttbar_semileptonic(rng: np.random.Generator, n: int) -> HardEvents:
    """ttbar with one W -> e nu / mu nu and one W -> q qbar'."""
    top_leptonic = rng.random(n) < 0.5
    return _top_decays(rng, n, (top_leptonic, ~top_leptonic))


def ttbar_dileptonic(rng: np.random.Generator, n: int) -> HardEvents:
    """ttbar with both W -> e nu / mu nu (ee, mumu, emu)."""
    both = np.ones(n, dtype=bool)
    return _top_decays(rng, n, (both, both))


def qcd_multijet(rng: np.random.Generator, n: int) -> HardEvents:
    """QCD multijet events: a balanced leading pair (pt > 30 GeV) plus radiation.

    The flavour mixture is enriched in heavy flavour (12 % b, 14 % c), as a training sample
    filtered on heavy-flavour content would be.
    """
    pt1 = kin.power_law(rng, n, low=30.0, index=3.0)
    pt2 = pt1 * rng.uniform(0.55, 1.0, n)
    phi1 = rng.uniform(-np.pi, np.pi, n)
    phi2 = kin.wrap_phi(phi1 + np.pi + rng.normal(0, 0.25, n))
    event = np.arange(n)
    pt = np.concatenate([pt1, pt2])
    kind = rng.choice(4, size=2 * n, p=[0.30, 0.44, 0.14, 0.12])
    hadron = np.choose(kind, [0, 0, 4, 5])
    parton = np.where(kind == 0, rng.integers(1, 4, 2 * n), np.choose(kind, [1, 21, 4, 5]))
    sign = np.where(kind == 1, 0, random_sign(rng, 2 * n))
    leading = _partons(np.concatenate([event, event]), pt, rng.normal(0, 1.4, 2 * n),
                       np.concatenate([phi1, phi2]), hadron, parton, sign)
    partons = _concat([leading, extra_jets(rng, n, mean=1.0, low=20.0, index=3.4)])
    empty = Leptons(*(np.zeros(0, dtype=t) for t in (np.int64, float, float, float, np.int32, np.int32)))
    return HardEvents(n, empty, partons, np.zeros(n), np.zeros(n))


PROCESSES = {
    "dy": drell_yan,
    "wjets": w_jets,
    "wcharm": w_charm,
    "ttbar_semilep": ttbar_semileptonic,
    "ttbar_dilep": ttbar_dileptonic,
    "qcd": qcd_multijet,
}


def sample_process(process: str, rng: np.random.Generator, n: int) -> HardEvents:
    """Sample ``n`` events of ``process`` (a key of :data:`PROCESSES`)."""
    try:
        func = PROCESSES[process]
    except KeyError:
        raise KeyError(f"unknown process {process!r}; use one of {', '.join(PROCESSES)}") from None
    return func(rng, n)
