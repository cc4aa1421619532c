"""Event-level quantities: primary vertices, pileup density, missing ET, triggers, filters."""

from __future__ import annotations

import numpy as np

from advcalib.generate.table import Table
from advcalib.selections.cuts import CUT_TABLES

#: MET filter flags written to every event (NanoAOD ``Flag_*``).
FLAGS = (
    "goodVertices", "globalSuperTightHalo2016Filter", "HBHENoiseFilter", "HBHENoiseIsoFilter",
    "EcalDeadCellTriggerPrimitiveFilter", "BadPFMuonFilter", "eeBadScFilter", "ecalBadCalibFilter", "METFilters",
)


def primary_vertices(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``PV_*`` and ``fixedGridRhoFastjetAll`` of ``n`` events with about 32 pileup vertices."""
    npvs = np.maximum(rng.poisson(32, n), 1)
    good = np.maximum(rng.binomial(npvs, 0.9), 1)
    return {
        "PV_npvs": npvs, "PV_npvsGood": good, "PV_x": rng.normal(-0.024, 0.001, n), "PV_y": rng.normal(0.069, 0.001, n),
        "PV_z": rng.normal(0.0, 3.5, n), "PV_ndof": rng.gamma(6.0, 25.0, n), "PV_chi2": rng.normal(0.85, 0.08, n),
        "fixedGridRhoFastjetAll": np.maximum(0.55 * npvs + rng.normal(0, 2.5, n), 0.5),
    }


def missing_et(rng: np.random.Generator, met_x: np.ndarray, met_y: np.ndarray, jets: Table, n: int) -> dict[str, np.ndarray]:
    """``MET_*`` and ``PuppiMET_*``: neutrino sum plus a resolution growing with the hadronic activity."""
    sum_et = np.bincount(jets["event"], jets["pt"], minlength=n) + rng.gamma(5.0, 60.0, n)
    sigma = 6.0 + 0.35 * np.sqrt(sum_et)
    noise_x, noise_y = rng.normal(0, 1, (2, n)) * sigma
    out = {}
    for name, scale in (("MET", 1.0), ("PuppiMET", 0.85)):
        mx = met_x + scale * noise_x + rng.normal(0, 2.0, n)
        my = met_y + scale * noise_y + rng.normal(0, 2.0, n)
        out.update({f"{name}_pt": np.hypot(mx, my), f"{name}_phi": np.arctan2(my, mx), f"{name}_sumEt": sum_et * scale})
    out["MET_significance"] = out["MET_pt"] ** 2 / sigma**2
    return out


def _count(table: Table, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(table["event"][mask], minlength=n)


def triggers(rng: np.random.Generator, muons: Table, electrons: Table, n: int) -> dict[str, np.ndarray]:
    """HLT bits of every trigger in the selections' cut tables, from the reconstructed leptons.

    Each leg fires with an efficiency of 92-94 %. The trigger names come from the
    ``triggers`` cut of :data:`advcalib.selections.cuts.CUT_TABLES`, so a generated file
    has every path that a selection reads. All paths of one family (the triggers of one
    channel) fire on the same condition, because the selections take the OR of a family
    and the sample needs no per-path difference. For example ``HLT_IsoMu27`` fires like
    ``HLT_IsoMu24``.
    """
    mu_iso = muons["iso"] < 0.2
    mu_loose = muons["iso"] < 0.4
    el_iso = electrons["iso"] < 0.2
    mu_eff = rng.random(len(muons["pt"])) < 0.94
    el_eff = rng.random(len(electrons["pt"])) < 0.92
    mu17 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 17), n)
    mu8 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 8), n)
    e23 = _count(electrons, el_iso & el_eff & (electrons["pt"] > 23), n)
    e12 = _count(electrons, el_iso & el_eff & (electrons["pt"] > 12), n)
    mu23 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 23), n)
    by_channel = {
        "mm": (mu17 >= 1) & (mu8 >= 2),
        "ee": (e23 >= 1) & (e12 >= 2),
        "m": _count(muons, mu_iso & mu_eff & (muons["pt"] > 24), n) > 0,
        "e": _count(electrons, el_iso & el_eff & (electrons["pt"] > 32), n) > 0,
        "emu": (mu23 >= 1) & (e12 >= 1),
    }
    bits: dict[str, np.ndarray] = {}
    for (selection, channel), table in CUT_TABLES.items():
        if channel not in by_channel:
            raise KeyError(f"cut table {selection}/{channel} has triggers the generator cannot fire; "
                           f"add a firing condition for channel {channel!r} to advcalib.generate.events.triggers")
        for name in table["triggers"]:
            bits[name] = by_channel[channel]
    return bits


def filters(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``Flag_*`` bits: each filter passes 99.9 % of events; METFilters is their logical and."""
    flags = {f"Flag_{name}": rng.random(n) < 0.999 for name in FLAGS[:-1]}
    flags["Flag_METFilters"] = np.logical_and.reduce(list(flags.values()))
    return flags
