"""advcalib checkpoints: a ``torch.save`` of a plain dict with weights, config and feature scales.

Layout (version 1)::

    {"format": "advcalib-checkpoint", "version": 1,
     "architecture": "DeepJet" | "DeepCSV",
     "config": {... free training settings ..., "model": {architecture keyword arguments}},
     "state_dict": {name: tensor},
     "feature_scales": {group name: tensor of the group's per-jet shape} | None,
     "metadata": {...}}

Only tensors and plain Python values are stored, so the file loads with
``torch.load(weights_only=True)`` and no pickled code runs at load time.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError as PydanticValidationError
from torch import nn

from advcalib.models.deepcsv import DeepCSV
from advcalib.models.deepjet import DeepJet
from advcalib.spec import DEEPCSV, DEEPJET_GROUPS, InputGroup

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "advcalib-checkpoint"
CHECKPOINT_VERSION = 1
ARCHITECTURES: dict[str, type[nn.Module]] = {"DeepJet": DeepJet, "DeepCSV": DeepCSV}


def input_groups(architecture: str) -> tuple[InputGroup, ...]:
    """Input groups of an architecture, in the order its ``forward`` takes them."""
    return DEEPJET_GROUPS if architecture == "DeepJet" else (DEEPCSV,)


def _check_feature_scales(
    scales: dict[str, Any] | None, architecture: str, *, where: str
) -> dict[str, np.ndarray] | None:
    if scales is None:
        return None
    groups = {group.name: group for group in input_groups(architecture)}
    if set(scales) != set(groups):
        raise ValueError(
            f"{where}: feature_scales has groups {sorted(scales)}, expected {sorted(groups)} for {architecture}"
        )
    checked = {}
    for name, value in scales.items():
        array = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float32)
        if array.shape != groups[name].shape:
            raise ValueError(
                f"{where}: feature_scales[{name!r}] has shape {array.shape}, expected {groups[name].shape}"
            )
        checked[name] = array
    return checked


_PLAIN_TYPES = (str, int, float, bool, type(None))


def _plain(value: Any, where: str) -> Any:
    """Return ``value`` as plain Python values that ``torch.load(weights_only=True)`` accepts.

    numpy scalars become Python numbers and paths become strings; other objects raise
    ``ValueError`` naming their key, because they would make the checkpoint unreadable.
    """
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        return {str(key): _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise ValueError(
        f"{where} has type {type(value).__name__}; checkpoints store only str, int, float, bool, None, lists and dicts"
    )


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    config: dict[str, Any],
    feature_scales: dict[str, Any] | None,
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write ``model`` with its configuration, feature scales and metadata to ``path``.

    ``config`` is stored as given (training settings, plain Python values), with the key
    ``"model"`` set to the architecture's keyword arguments (``model.config``) so that
    ``load_checkpoint`` can rebuild the network. ``feature_scales`` maps each input group
    name of ``advcalib.spec`` to an array of that group's per-jet shape, or is None.
    ``config`` and ``metadata`` may hold str, int, float, bool, None, lists, tuples and
    dicts; numpy scalars are stored as Python numbers and paths as strings.
    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is False, and
    ``ValueError`` for a model that is not DeepJet or DeepCSV, feature scales of the wrong
    shape, a ``config["model"]`` that differs from ``model.config``, or other values in
    ``config`` or ``metadata``.
    """
    path = Path(path)
    architecture = getattr(model, "architecture", None)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"cannot save {type(model).__name__}: only {', '.join(ARCHITECTURES)} models are supported")
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint {path} exists; pass overwrite=True to replace it")
    if "model" in config and dict(config["model"]) != model.config:
        raise ValueError(f"config['model'] = {config['model']} differs from the model's own settings {model.config}")
    scales = _check_feature_scales(feature_scales, architecture, where=str(path))
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": architecture,
        "config": _plain({**config, "model": dict(model.config)}, "config"),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "feature_scales": None if scales is None else {k: torch.from_numpy(v) for k, v in scales.items()},
        "metadata": _plain(dict(metadata), "metadata"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    logger.info("saved %s checkpoint to %s", architecture, path)
    return path


def is_torchscript_archive(path: Path) -> bool:
    """Tell whether ``path`` is a TorchScript archive (a zip file with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if is_torchscript_archive(path):
        raise ValueError(
            f"{path} is a TorchScript archive, not an advcalib checkpoint; "
            "give it the suffix .ts or .torchscript to load it as TorchScript"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError ... for foreign files
        raise ValueError(
            f"{path} is not an advcalib checkpoint (torch.load failed: {err}); "
            "expected a file written by advcalib.models.save_checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not an advcalib checkpoint: expected a dict with format {CHECKPOINT_FORMAT!r} "
            f"written by advcalib.models.save_checkpoint, found {found!r}"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {payload.get('version')!r} is not supported (expected {CHECKPOINT_VERSION})")
    if payload.get("architecture") not in ARCHITECTURES:
        raise ValueError(
            f"{path}: unknown architecture {payload.get('architecture')!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    return payload


def _build_model(payload: dict[str, Any], path: Path) -> nn.Module:
    architecture = payload["architecture"]
    settings = (payload.get("config") or {}).get("model", {})
    try:
        model = ARCHITECTURES[architecture](**settings)
    except (TypeError, PydanticValidationError) as err:
        raise ValueError(f"{path}: invalid {architecture} settings {settings}: {err}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"{path}: weights do not match the {architecture} architecture: {err}") from None
    return model.eval()


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load an advcalib checkpoint and return ``(model in eval mode, info)``.

    ``info`` contains ``architecture``, ``config``, ``metadata``, ``feature_scales`` (numpy
    arrays by group name, or None) and ``path``. Raises ``FileNotFoundError`` for a missing
    file and ``ValueError``, naming the file and what was expected, for anything that is
    not a version-1 advcalib checkpoint of a known architecture with matching weights and
    feature-scale shapes. No pickled code runs (``weights_only=True``).
    """
    path = Path(path)
    payload = _read_payload(path)
    model = _build_model(payload, path)
    info = {
        "architecture": payload["architecture"],
        "config": payload.get("config", {}),
        "metadata": payload.get("metadata", {}),
        "feature_scales": _check_feature_scales(payload.get("feature_scales"), payload["architecture"], where=str(path)),
        "path": path,
    }
    return model, info
