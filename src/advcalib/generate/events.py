"""Event-level quantities: primary vertices, pileup density, missing ET, triggers, filters."""

from __future__ import annotations

import numpy as np

from advcalib.generate.table import Table

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
    """HLT bits from the reconstructed leptons with per-leg efficiencies of 90-95 %."""
    mu_iso = muons["iso"] < 0.2
    mu_loose = muons["iso"] < 0.4
    el_iso = electrons["iso"] < 0.2
    mu_eff = rng.random(len(muons["pt"])) < 0.94
    el_eff = rng.random(len(electrons["pt"])) < 0.92
    single_mu24 = _count(muons, mu_iso & mu_eff & (muons["pt"] > 24), n) > 0
    single_mu27 = _count(muons, mu_iso & mu_eff & (muons["pt"] > 27), n) > 0
    single_e32 = _count(electrons, el_iso & el_eff & (electrons["pt"] > 32), n) > 0
    mu17 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 17), n)
    mu8 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 8), n)
    e23 = _count(electrons, el_iso & el_eff & (electrons["pt"] > 23), n)
    e12 = _count(electrons, el_iso & el_eff & (electrons["pt"] > 12), n)
    mu23 = _count(muons, mu_loose & mu_eff & (muons["pt"] > 23), n)
    return {
        "HLT_IsoMu24": single_mu24, "HLT_IsoMu27": single_mu27, "HLT_Ele32_WPTight_Gsf": single_e32,
        "HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8": (mu17 >= 1) & (mu8 >= 2),
        "HLT_Ele23_Ele12_CaloIdL_TrackIdL_IsoVL_DZ": (e23 >= 1) & (e12 >= 2),
        "HLT_Mu23_TrkIsoVVL_Ele12_CaloIdL_TrackIdL_IsoVL_DZ": (mu23 >= 1) & (e12 >= 1),
    }


def filters(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``Flag_*`` bits: each filter passes 99.9 % of events; METFilters is their logical and."""
    flags = {f"Flag_{name}": rng.random(n) < 0.999 for name in FLAGS[:-1]}
    flags["Flag_METFilters"] = np.logical_and.reduce(list(flags.values()))
    return flags
