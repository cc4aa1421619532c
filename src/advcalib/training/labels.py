"""DeepJet truth classes (b, bb, lepb, c, uds, g) of simulated jets.

Two sources, in this order of preference:

* ``Jet_FlavSplit`` (BTV PFNano): the detailed DeepJet truth code of each jet.  Codes
  500 (b), 510/511 (bb, gluon-split bb), 520/521 (leptonic b, leptonic b via c),
  400/410/411 (c, cc, gluon-split cc), 1/2 (ud, s) and 0 (g) map onto the six DeepJet
  classes as in the DeepJet training. Every other code (tau, pileup, undefined) has no
  class.
* Otherwise the NanoAOD jet truth: ``hadronFlavour`` 5 is a b jet, split into ``bb`` when
  ``nBHadrons >= 2``, else ``lepb`` when the jet's first muon (``Jet_muonIdx1``) or
  electron (``Jet_electronIdx1``) is not isolated (relative isolation above
  ``NONISOLATED_RELISO``, the reconstructed sign of a semileptonic B decay), else ``b``;
  ``hadronFlavour`` 4 is ``c``; ``hadronFlavour`` 0 is ``g`` for ``partonFlavour`` 21 and
  ``uds`` for ``|partonFlavour|`` 1 to 3.  A light jet without a parton match
  (``partonFlavour`` 0, mostly pileup) has no class.

Jets without a class get label -1; callers drop them and log how many.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import awkward as ak
import numpy as np

from advcalib.spec import DEEPJET_CLASSES

logger = logging.getLogger(__name__)

#: Class index of each DeepJet class name.
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(DEEPJET_CLASSES)}
#: Jet_FlavSplit code -> DeepJet class.
FLAVSPLIT_CLASSES: dict[int, str] = {
    500: "b",
    510: "bb",
    511: "bb",
    520: "lepb",
    521: "lepb",
    400: "c",
    410: "c",
    411: "c",
    1: "uds",
    2: "uds",
    0: "g",
}
#: Relative isolation above which a lepton inside a b jet counts as from a semileptonic decay.
NONISOLATED_RELISO = 0.2
#: Class indices of the three CMS flavour groups used for ROC curves.
B_CLASSES = (CLASS_INDEX["b"], CLASS_INDEX["bb"], CLASS_INDEX["lepb"])
C_CLASSES = (CLASS_INDEX["c"],)
LIGHT_CLASSES = (CLASS_INDEX["uds"], CLASS_INDEX["g"])


def labels_from_flavsplit(flavsplit: np.ndarray) -> np.ndarray:
    """Map ``Jet_FlavSplit`` codes onto DeepJet class indices (-1 for codes without a class)."""
    codes = np.asarray(flavsplit).astype(np.int64)
    labels = np.full(codes.shape, -1, dtype=np.int64)
    for code, name in FLAVSPLIT_CLASSES.items():
        labels[codes == code] = CLASS_INDEX[name]
    return labels


def labels_from_hadron_truth(
    *,
    hadron_flavour: np.ndarray,
    parton_flavour: np.ndarray,
    n_b_hadrons: np.ndarray,
    semileptonic: np.ndarray,
) -> np.ndarray:
    """Derive DeepJet class indices from NanoAOD jet truth (see the module docstring).

    ``semileptonic`` is a boolean per jet: a non-isolated lepton is matched to the jet.
    ``nCHadrons`` is not needed because a c jet is only split off by ``hadronFlavour``.
    """
    hadron = np.asarray(hadron_flavour).astype(np.int64)
    parton = np.abs(np.asarray(parton_flavour).astype(np.int64))
    labels = np.full(hadron.shape, -1, dtype=np.int64)
    is_b = hadron == 5
    labels[is_b] = CLASS_INDEX["b"]
    labels[is_b & np.asarray(semileptonic, dtype=bool)] = CLASS_INDEX["lepb"]
    labels[is_b & (np.asarray(n_b_hadrons) >= 2)] = CLASS_INDEX["bb"]
    labels[hadron == 4] = CLASS_INDEX["c"]
    light = hadron == 0
    labels[light & (parton == 21)] = CLASS_INDEX["g"]
    labels[light & (parton >= 1) & (parton <= 3)] = CLASS_INDEX["uds"]
    return labels


def gather(jagged: ak.Array, event_index: np.ndarray, inner_index: np.ndarray) -> np.ndarray:
    """Pick ``jagged[event, inner]`` per row as float64 (NaN where ``inner`` is < 0 or out of range)."""
    counts = ak.to_numpy(ak.num(jagged, axis=1))
    flat = ak.to_numpy(ak.flatten(jagged, axis=1)).astype(np.float64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    valid = (inner_index >= 0) & (inner_index < counts[event_index])
    out = np.full(len(event_index), np.nan)
    out[valid] = flat[starts[event_index[valid]] + inner_index[valid]]
    return out


def _nonisolated_lepton(events: ak.Array, event_index: np.ndarray, jet_index: np.ndarray) -> np.ndarray:
    """Flag jets whose first muon or electron has relative isolation above the threshold."""
    result = np.zeros(len(event_index), dtype=bool)
    leptons = (("muonIdx1", "Muon", "pfRelIso04_all"), ("electronIdx1", "Electron", "pfRelIso03_all"))
    for index_field, collection, iso_field in leptons:
        if index_field not in events.Jet.fields or collection not in events.fields:
            continue
        if iso_field not in events[collection].fields:
            logger.warning("%s_%s missing: cannot flag semileptonic b jets through %s", collection, iso_field, collection)
            continue
        lepton = gather(events.Jet[index_field], event_index, jet_index)
        lepton = np.where(np.isnan(lepton), -1, lepton).astype(np.int64)
        iso = gather(events[collection][iso_field], event_index, lepton)
        result |= np.nan_to_num(iso, nan=0.0) > NONISOLATED_RELISO
    return result


def jet_labels(events: ak.Array, event_index: np.ndarray, jet_index: np.ndarray) -> np.ndarray:
    """Return the DeepJet class index of each selected jet (``-1`` where it has none).

    Args:
        events: eager NanoEvents of simulation.
        event_index, jet_index: the jets, as ``DeepJetInputs.event_index`` / ``jet_index``.

    Raises:
        KeyError: when the jets carry neither ``FlavSplit`` nor ``hadronFlavour`` (data).
    """
    event_index = np.asarray(event_index, dtype=np.int64)
    jet_index = np.asarray(jet_index, dtype=np.int64)
    fields = set(events.Jet.fields)
    if "FlavSplit" in fields:
        return labels_from_flavsplit(gather(events.Jet.FlavSplit, event_index, jet_index))
    required = {"hadronFlavour", "partonFlavour", "nBHadrons"}
    if not required <= fields:
        raise KeyError(
            f"jets carry neither Jet_FlavSplit nor {sorted(required - fields)}; "
            "training and evaluation need simulated PFNano files with generator truth"
        )
    return labels_from_hadron_truth(
        hadron_flavour=gather(events.Jet.hadronFlavour, event_index, jet_index),
        parton_flavour=gather(events.Jet.partonFlavour, event_index, jet_index),
        n_b_hadrons=gather(events.Jet.nBHadrons, event_index, jet_index),
        semileptonic=_nonisolated_lepton(events, event_index, jet_index),
    )


def class_counts(labels: np.ndarray) -> Mapping[str, int]:
    """Count jets per DeepJet class (label -1 is reported as ``none``)."""
    counts = {name: int(np.sum(labels == i)) for name, i in CLASS_INDEX.items()}
    counts["none"] = int(np.sum(labels < 0))
    return counts
