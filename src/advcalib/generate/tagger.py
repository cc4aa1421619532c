"""A cheap analytic stand-in for the DeepJet and DeepCSV outputs stored in NanoAOD.

The class scores are a softmax of hand-set linear functions of reconstructed quantities:
impact-parameter significances, vertex mass and flight significance, soft leptons and track
multiplicity. They never read the generator truth, so pseudo-data mismodeling propagates
into the stored discriminators as it would for a real tagger.
"""

from __future__ import annotations

import numpy as np

from advcalib.generate.tagvars import MISSING


def _clip_sig(values: np.ndarray) -> np.ndarray:
    return np.clip(np.where(values == MISSING, -1.0, values), -3.0, 25.0)


def deepjet_probabilities(deepcsv: dict[str, np.ndarray], *, n_soft_leptons: np.ndarray, n_charged: np.ndarray, raw_pt: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities of the six DeepJet classes (b, bb, lepb, c, uds, g) per jet; they sum to 1."""
    s1, s2, s3 = (_clip_sig(deepcsv[f"trackSip2dSig_{i}"]) for i in range(3))
    has_sv = deepcsv["vertexCategory"] == 0
    mass = np.where(has_sv, deepcsv["vertexMass"], 0.0)
    flight = np.where(has_sv, np.clip(deepcsv["flightDistance3dSig"], 0.0, 60.0), 0.0)
    lepton = (n_soft_leptons > 0).astype(float)
    expected = 4.0 + 5.0 * np.log(np.maximum(raw_pt, 15.0) / 12.0)
    b = 0.26 * s2 + 0.2 * s3 + 1.3 * has_sv * (mass > 1.8) + 0.4 * has_sv + 0.03 * flight - 3.2
    k0s = has_sv * (np.abs(mass - 0.498) < 0.03)
    charm_mass = has_sv * (mass > 0.6) * (mass < 2.2)
    c = 0.2 * np.clip(s1, -3, 12) + 0.15 * np.clip(s2, -3, 8) + 1.2 * charm_mass - 1.0 * k0s + 0.3 * lepton - 2.2
    g = 0.08 * (n_charged - expected) - 0.2
    logits = np.stack([b, b - 1.8 + 0.5 * (deepcsv["jetNSecondaryVertices"] > 1), b - 1.5 + 2.2 * lepton - 0.6 * (1 - lepton),
                       c, np.zeros_like(b), g], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    return dict(zip(("b", "bb", "lepb", "c", "uds", "g"), prob.T))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), -1.0)


def stored_discriminators(prob: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``Jet_btagDeepFlav*`` and ``Jet_btagDeep*`` branch values (without ``Jet_``) from class probabilities."""
    b_all = prob["b"] + prob["bb"] + prob["lepb"]
    light = prob["uds"] + prob["g"]
    deep_b = prob["b"] + prob["lepb"]
    return {
        "btagDeepFlavB": b_all, "btagDeepFlavB_b": prob["b"], "btagDeepFlavB_bb": prob["bb"],
        "btagDeepFlavB_lepb": prob["lepb"], "btagDeepFlavC": prob["c"], "btagDeepFlavUDS": prob["uds"],
        "btagDeepFlavG": prob["g"], "btagDeepFlavCvL": _ratio(prob["c"], prob["c"] + light),
        "btagDeepFlavCvB": _ratio(prob["c"], prob["c"] + b_all), "btagDeepFlavQG": _ratio(prob["g"], light),
        "btagDeepB": b_all, "btagDeepB_b": deep_b, "btagDeepB_bb": prob["bb"], "btagDeepC": prob["c"],
        "btagDeepL": light, "btagDeepCvL": _ratio(prob["c"], prob["c"] + light),
        "btagDeepCvB": _ratio(prob["c"], prob["c"] + b_all),
    }
