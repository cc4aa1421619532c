"""One inference interface for torch, TorchScript and ONNX flavour taggers.

A ``Tagger`` turns model inputs into class probabilities in batches on a chosen device.
Taggers pickle for Dask workers. Torch modules travel with their weights on the CPU.
TorchScript modules and onnxruntime sessions do not pickle, so they travel as the bytes
of their file and are rebuilt on the worker at first use, as coffea's ``ml_tools`` does.
"""

from __future__ import annotations

import copy
import io
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from advcalib.models.deepjet import DeepJet
from advcalib.models.device import resolve_device
from advcalib.models.fast import FastDeepJet
from advcalib.models.input_arrays import model_arrays
from advcalib.spec import DEEPCSV_CLASSES, DEEPJET_CLASSES, DEEPJET_GROUPS

logger = logging.getLogger(__name__)



class Tagger:
    """A loaded flavour tagger: ``predict(inputs)`` returns probabilities ``[N, n_classes]``.

    Attributes:
        name: model name (packaged name or file stem).
        kind: "checkpoint", "torchscript" or "onnx".
        architecture: "DeepJet" or "DeepCSV", with ``classes`` in output order.
        device: torch device, settable directly or through ``to``.
        module: differentiable torch module that returns logits, or None.
        feature_scales: numpy arrays by input group name, or None.
        fast: whether ``predict`` runs a DeepJet checkpoint through
            ``advcalib.models.fast.FastDeepJet`` (default True); False runs ``module`` as it
            is. TorchScript and ONNX taggers predict as before either way.

    Build taggers with ``load_tagger``.
    """

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        architecture: str,
        device: str | torch.device | None = None,
        feature_scales: dict[str, np.ndarray] | None = None,
        metadata: dict[str, Any] | None = None,
        fast: bool = True,
    ) -> None:
        self.name = name
        self.kind = kind
        self.architecture = architecture
        self.classes = DEEPJET_CLASSES if architecture == "DeepJet" else DEEPCSV_CLASSES
        self.feature_scales = feature_scales
        self.metadata = metadata or {}
        self.fast = fast
        self._device_request = None if device is None else str(device)
        self._device = resolve_device(device)

    def __repr__(self) -> str:
        fields = f"name={self.name!r}, kind={self.kind!r}, architecture={self.architecture!r}, device='{self.device}'"
        return f"{type(self).__name__}({fields})"

    @property
    def device(self) -> torch.device:
        return self._device

    @device.setter
    def device(self, device: str | torch.device | None) -> None:
        self._device = resolve_device(device)
        self._device_request = None if device is None else str(device)
        self._on_device_change()

    def to(self, device: str | torch.device | None) -> Tagger:
        """Move the tagger to ``device`` (None: CUDA when available, else CPU) and return it."""
        self.device = device
        return self

    @property
    def module(self) -> nn.Module | None:
        return None

    def predict(self, inputs: Any, *, batch_size: int = 4096) -> np.ndarray:
        """Compute class probabilities, float32 ``[N, n_classes]``, in batches of ``batch_size`` jets.

        ``inputs``: for DeepJet a ``DeepJetInputs`` or a tuple ``(glob, cpf, npf, sv[, jet_pt])``
        of arrays shaped as in ``advcalib.spec``; for DeepCSV an array ``[N, 66]``. No jets
        give an array ``[0, n_classes]``. Raises ``ValueError`` for inputs of other shapes.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        arrays = model_arrays(inputs, self.architecture)
        n_jets = len(arrays[0])
        if n_jets == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        parts = [
            self._predict_batch(tuple(a[start : start + batch_size] for a in arrays))
            for start in range(0, n_jets, batch_size)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _predict_batch(self, arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        raise NotImplementedError

    def _on_device_change(self) -> None:
        """Hook for subclasses: move modules or drop sessions after a device change."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_device"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # The device is chosen again on the machine that unpickles, with the same request.
        self._device = resolve_device(self._device_request)
        self._on_device_change()


def _torch_inputs(arrays: tuple[np.ndarray, ...], device: torch.device, architecture: str) -> list[torch.Tensor]:
    n_model_inputs = len(DEEPJET_GROUPS) if architecture == "DeepJet" else 1
    non_blocking = device.type == "cuda"
    return [torch.from_numpy(a).to(device, non_blocking=non_blocking) for a in arrays[:n_model_inputs]]


class TorchTagger(Tagger):
    """Tagger backed by a torch module (advcalib checkpoint or TorchScript) that returns logits."""

    def __init__(
        self, module: nn.Module, *, torchscript_bytes: bytes | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._module: nn.Module | None = module.eval().to(self.device)
        self._torchscript_bytes = torchscript_bytes
        self._fast_module: FastDeepJet | None = None

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            buffer = io.BytesIO(self._torchscript_bytes)
            self._module = torch.jit.load(buffer, map_location=self.device).eval()
        return self._module

    def _on_device_change(self) -> None:
        if self._module is not None:
            self._module.to(self.device)

    def _inference_module(self, module: nn.Module) -> nn.Module:
        """Return what ``predict`` runs: the fast wrapper of an eval-mode DeepJet, built on first use."""
        if not self.fast or not isinstance(module, DeepJet):
            return module
        if self._fast_module is None or self._fast_module.model is not module:
            self._fast_module = FastDeepJet(module)
        return self._fast_module

    def _predict_batch(self, arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        module = self.module
        if module.training:
            logger.warning("tagger %s: module was in training mode; switching it to eval mode for prediction", self.name)
            module.eval()
        with torch.no_grad():
            logits = self._inference_module(module)(*_torch_inputs(arrays, self.device, self.architecture))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # The fast wrapper contains derived tensors only, so the worker rebuilds it at first use.
        state["_fast_module"] = None
        if self._torchscript_bytes is not None:
            state["_module"] = None
        elif self._module is not None:
            # Weights travel on the CPU so that a worker without CUDA can unpickle them.
            state["_module"] = cpu_copy(self._module)
        return state


def cpu_copy(module: nn.Module) -> nn.Module:
    """Return a copy of ``module`` on the CPU, leaving the original where it is."""
    return copy.deepcopy(module).to("cpu")
