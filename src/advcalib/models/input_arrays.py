"""Conversion of the inputs handed to a tagger into checked float32 arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from advcalib.spec import DEEPCSV, DEEPJET_GROUPS, GLOBAL, JET_PT, InputGroup


def _expected(groups: tuple[InputGroup, ...]) -> str:
    return ", ".join(f"{g.name} [N, {', '.join(map(str, g.shape))}]" for g in groups)


def _check_shapes(arrays: list[np.ndarray], groups: tuple[InputGroup, ...]) -> list[np.ndarray]:
    checked = []
    for array, group in zip(arrays, groups):
        # Writable C-contiguous float32, so torch.from_numpy can share the memory without a warning.
        array = np.require(array, dtype=np.float32, requirements=("C", "W"))
        if array.shape[1:] != group.shape:
            raise ValueError(
                f"{group.name} inputs have shape {array.shape}, expected [N, {', '.join(map(str, group.shape))}]; "
                f"all inputs: {_expected(groups)}"
            )
        checked.append(array)
    lengths = {len(a) for a in checked}
    if len(lengths) > 1:
        raise ValueError(f"input groups have different numbers of jets: {[len(a) for a in checked]}")
    return checked


def deepjet_arrays(inputs: Any) -> tuple[np.ndarray, ...]:
    """Return ``(glob, cpf, npf, sv, jet_pt)`` float32 arrays from DeepJet inputs.

    ``inputs`` is an ``advcalib.inputs.DeepJetInputs`` or any object with ``.arrays()``
    returning ``(glob, cpf, npf, sv)`` and optionally ``.jet_pt``, or a tuple of those four
    arrays with an optional fifth, the jet pt ``[N, 1]``. Without a jet pt, the first
    global feature is used, because CMSSW's DeepFlavourONNXJetTagsProducer fills
    ``input_5`` with the same uncorrected jet pt as ``input_1[:, 0]``.
    Raises ``ValueError`` for other objects or shapes that differ from ``advcalib.spec``.
    """
    jet_pt = None
    if hasattr(inputs, "arrays"):
        arrays = list(inputs.arrays())
        jet_pt = getattr(inputs, "jet_pt", None)
    elif isinstance(inputs, (tuple, list)) and len(inputs) in (4, 5):
        arrays = list(inputs[:4])
        jet_pt = inputs[4] if len(inputs) == 5 else None
    else:
        raise ValueError(
            f"DeepJet inputs must be a DeepJetInputs or a tuple (glob, cpf, npf, sv[, jet_pt]), got {type(inputs).__name__}"
        )
    checked = _check_shapes(arrays, DEEPJET_GROUPS)
    if jet_pt is None:
        jet_pt = checked[0][:, GLOBAL.index("jet_pt")].reshape(-1, 1)
    (jet_pt,) = _check_shapes([np.asarray(jet_pt).reshape(-1, 1)], (JET_PT,))
    if len(jet_pt) != len(checked[0]):
        raise ValueError(f"jet_pt has {len(jet_pt)} rows, the other inputs have {len(checked[0])}")
    return (*checked, jet_pt)


def deepcsv_arrays(inputs: Any) -> tuple[np.ndarray]:
    """Return DeepCSV inputs as a one-element tuple of a float32 ``[N, 66]`` array."""
    if isinstance(inputs, (tuple, list)) and len(inputs) == 1:
        inputs = inputs[0]
    if not isinstance(inputs, np.ndarray):
        raise ValueError(f"DeepCSV inputs must be a numpy array [N, {len(DEEPCSV.features)}], got {type(inputs).__name__}")
    return tuple(_check_shapes([inputs], (DEEPCSV,)))


def model_arrays(inputs: Any, architecture: str) -> tuple[np.ndarray, ...]:
    """Return the arrays a model of ``architecture`` consumes (jet pt last for DeepJet)."""
    if architecture == "DeepJet":
        return deepjet_arrays(inputs)
    return deepcsv_arrays(inputs)
