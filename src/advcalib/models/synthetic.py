"""Random DeepJet inputs in realistic ranges, for checks of models without events.

The values are not physics: each feature is drawn on a scale typical of its real
distribution, clipped to the bounds of ``advcalib.spec``, and candidate and vertex slots
beyond a random multiplicity are zero, as padding is in real inputs. This is enough to
exercise every layer of a network (for example to compare two implementations of it).
"""

from __future__ import annotations

import numpy as np

from advcalib.spec import CHARGED, DEEPJET_GROUPS, GLOBAL, NEUTRAL, VERTEX, InputGroup

#: Typical magnitudes of features whose scale is far from 1; the others use 1.
_SCALES: dict[str, float] = {
    "jet_pt": 60.0,
    "jet_eta": 1.2,
    "npv": 30.0,
    "TagVarCSV_trackSip2dValAboveCharm": 0.02,
    "TagVarCSV_trackSip2dSigAboveCharm": 5.0,
    "TagVarCSV_trackSip3dValAboveCharm": 0.05,
    "TagVarCSV_trackSip3dSigAboveCharm": 5.0,
    "Cpfcan_BtagPf_trackEtaRel": 3.0,
    "Cpfcan_BtagPf_trackPPar": 20.0,
    "Cpfcan_BtagPf_trackSip2dVal": 0.05,
    "Cpfcan_BtagPf_trackSip2dSig": 10.0,
    "Cpfcan_BtagPf_trackSip3dVal": 0.1,
    "Cpfcan_BtagPf_trackSip3dSig": 10.0,
    "Cpfcan_BtagPf_trackJetDistVal": 0.05,
    "Cpfcan_chi2": 2.0,
    "sv_pt": 20.0,
    "sv_mass": 2.0,
    "sv_chi2": 5.0,
    "sv_normchi2": 2.0,
    "sv_dxy": 0.5,
    "sv_dxysig": 20.0,
    "sv_d3d": 0.7,
    "sv_d3dsig": 20.0,
}
_POSITIVE = {"jet_pt", "npv", "sv_pt", "sv_mass", "sv_chi2", "sv_dxy", "sv_d3d", "Cpfcan_chi2", "Cpfcan_puppiw", "Npfcan_puppiw"}


def _draw_group(group: InputGroup, n: int, rng: np.random.Generator) -> np.ndarray:
    values = np.empty((n, group.slots, len(group.features)), dtype=np.float32)
    low, high = group.bounds()
    for i, feature in enumerate(group.features):
        if feature.integer:
            column = rng.integers(0, 6, size=(n, group.slots)).astype(np.float32)
        else:
            column = rng.normal(0.0, _SCALES.get(feature.name, 1.0), size=(n, group.slots))
            if feature.name in _POSITIVE:
                column = np.abs(column) + (20.0 if feature.name == "jet_pt" else 0.0)
        values[:, :, i] = np.clip(column, low[i], high[i])
    return values.reshape((n, *group.shape))


def random_deepjet_inputs(n: int, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Draw ``n`` jets of DeepJet inputs: ``(glob, cpf, npf, sv, jet_pt)`` float32 arrays.

    The multiplicities in the global features (nCpfcand, nNpfcand, nsv) match the number
    of filled slots, and ``jet_pt`` repeats the global ``jet_pt`` as CMSSW's ``input_5`` does.
    """
    rng = np.random.default_rng(seed)
    glob, cpf, npf, sv = (_draw_group(group, n, rng) for group in DEEPJET_GROUPS)
    for group, array, count_name in ((CHARGED, cpf, "nCpfcand"), (NEUTRAL, npf, "nNpfcand"), (VERTEX, sv, "nsv")):
        counts = rng.integers(0, group.slots + 1, size=n)
        array[np.arange(group.slots)[None, :] >= counts[:, None]] = 0.0
        glob[:, GLOBAL.index(count_name)] = counts
    jet_pt = glob[:, GLOBAL.index("jet_pt")].reshape(-1, 1).copy()
    return glob, cpf, npf, sv, jet_pt
