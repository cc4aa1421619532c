"""Tagger for CMS DeepJet ONNX networks, run through onnxruntime."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from advcalib.models.onnx_import import ONNX_OUTPUT
from advcalib.models.tagger import Tagger, cpu_copy
from advcalib.spec import DEEPJET_GROUPS, JET_PT

logger = logging.getLogger(__name__)


def onnx_providers(device: torch.device) -> list[Any]:
    """Return onnxruntime execution providers for ``device``, CPU last as the fallback.

    A CUDA device gets ``CUDAExecutionProvider`` with its device id when this onnxruntime
    build has it. Without it, a warning is logged and the CPU provider alone is used.
    """
    import onnxruntime

    if device.type == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        logger.warning("onnxruntime has no CUDAExecutionProvider; ONNX inference runs on the CPU")
    return ["CPUExecutionProvider"]


class OnnxTagger(Tagger):
    """Tagger that runs a CMS DeepJet ONNX network through onnxruntime.

    ``module`` is a torch copy of the network (``import_onnx_deepjet``) for gradients,
    or None for networks that cannot be imported, such as conversions from Keras.
    The onnxruntime session runs with ``torch.get_num_threads()`` intra-op threads.
    """

    def __init__(self, model_bytes: bytes, *, torch_module: nn.Module | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model_bytes = model_bytes
        self._session = None
        self._torch_module = None if torch_module is None else torch_module.eval().to(self.device)

    @property
    def module(self) -> nn.Module | None:
        return self._torch_module

    @property
    def session(self):
        """The onnxruntime session, created on first use for the current device."""
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self._session = onnxruntime.InferenceSession(
                self._model_bytes, sess_options=options, providers=onnx_providers(self.device)
            )
        return self._session

    def _on_device_change(self) -> None:
        self._session = None
        if self._torch_module is not None:
            self._torch_module.to(self.device)

    def _predict_batch(self, arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        names = [group.onnx_name for group in DEEPJET_GROUPS] + [JET_PT.onnx_name]
        return self.session.run([ONNX_OUTPUT], dict(zip(names, arrays)))[0]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_session"] = None
        if self._torch_module is not None:
            state["_torch_module"] = cpu_copy(self._torch_module)
        return state
