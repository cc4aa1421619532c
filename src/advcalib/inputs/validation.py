"""Compare a DeepJet network run on the built inputs with the discriminators stored in a file."""

from __future__ import annotations

import logging
from pathlib import Path

import awkward as ak
import numpy as np

from advcalib.inputs.builder import build_deepjet_inputs

logger = logging.getLogger(__name__)

#: Discriminator name -> ``Jet`` field of PFNano/NanoAOD that stores it.
STORED_DISCRIMINATORS: dict[str, str] = {
    "BvsAll": "btagDeepFlavB",
    "CvsL": "btagDeepFlavCvL",
    "CvsB": "btagDeepFlavCvB",
}


def agreement(computed: np.ndarray, stored: np.ndarray) -> dict[str, float | int]:
    """Pearson r, median and 95th percentile of ``|computed - stored|`` and the jet count.

    Jets whose stored value is -1 (NanoAOD's marker for an undefined ratio) are left out.
    With fewer than two jets, or a constant column, ``pearson_r`` is NaN.
    """
    valid = (stored >= 0) & np.isfinite(computed)
    computed, stored = computed[valid].astype(np.float64), stored[valid].astype(np.float64)
    diff = np.abs(computed - stored)
    defined = computed.size >= 2 and computed.std() > 0 and stored.std() > 0
    return {
        "pearson_r": float(np.corrcoef(computed, stored)[0, 1]) if defined else float("nan"),
        "median_abs_diff": float(np.median(diff)) if diff.size else float("nan"),
        "p95_abs_diff": float(np.percentile(diff, 95)) if diff.size else float("nan"),
        "n_jets": int(computed.size),
    }


def compare_with_stored(events: ak.Array, model: str | Path, *, source: str = "auto") -> dict[str, dict]:
    """Run ``model`` on the inputs built from ``events`` and compare with the stored outputs.

    Returns ``{"BvsAll": {...}, "CvsL": {...}, "CvsB": {...}}`` with the keys of
    :func:`agreement`. Raises ``KeyError`` when the file lacks a stored discriminator.
    """
    from advcalib.models import discriminators, load_tagger

    missing = [field for field in STORED_DISCRIMINATORS.values() if field not in events.Jet.fields]
    if missing:
        raise KeyError(f"the events lack the stored discriminators Jet_{', Jet_'.join(missing)}; use a NanoAOD or PFNano file")
    inputs = build_deepjet_inputs(events, source=source)
    probabilities = load_tagger(model).predict(inputs)
    computed = discriminators(probabilities)
    result = {}
    for name, field in STORED_DISCRIMINATORS.items():
        stored = ak.to_numpy(ak.flatten(events.Jet[field], axis=1)).astype(np.float64)
        result[name] = agreement(computed[name], stored)
        logger.info("%s: %s", name, result[name])
    return result
