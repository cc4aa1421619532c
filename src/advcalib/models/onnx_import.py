"""Import the weights of a CMS DeepJet ONNX file exported from PyTorch into ``DeepJet``.

The Run 3 DeepJet of CMS (``DeepJet_Run3_122X.onnx``) was exported from a PyTorch model
whose module names ``advcalib.models.DeepJet`` reproduces, so every BatchNorm, Conv and
Gemm initializer keeps its PyTorch name (``InputProcess.cpf_conv1.lin.weight``). Only the
LSTM weights were renamed by the exporter (``onnx::LSTM_559``); they are found through
the inputs of the nodes ``/cpf_lstm/LSTM``, ``/npf_lstm/LSTM`` and ``/vtx_lstm/LSTM``.

ONNX stores LSTM gates in the order input, output, forget, cell (``iofc``), PyTorch in
the order input, forget, cell, output (``ifgo``); the import reorders them. The ONNX
bias ``B`` contains the input and recurrent biases one after the other.

Networks converted from Keras (``DeepFlavourV03_10X.onnx``) have other names and
layouts and are rejected with a ``ValueError``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from advcalib.models.deepjet import DeepJet
from advcalib.models.synthetic import random_deepjet_inputs
from advcalib.spec import DEEPJET_GROUPS, JET_PT

logger = logging.getLogger(__name__)

#: Probability output of the CMS DeepJet ONNX networks.
ONNX_OUTPUT = "ID_pred/Softmax:0"
#: Number of synthetic jets and max probability difference of the check after import.
VERIFY_JETS = 64
VERIFY_TOLERANCE = 1e-4

#: PyTorch gate blocks ``(i, f, g, o)`` taken from the ONNX blocks ``(i, o, f, c)``.
_ONNX_TO_TORCH_GATES = (0, 2, 3, 1)
_LSTM_MODULES = ("cpf_lstm", "npf_lstm", "vtx_lstm")


def _load_onnx_graph(path: Path):
    try:
        import onnx
    except ImportError as err:
        raise ImportError("importing ONNX weights needs the 'onnx' package; install it with `pip install onnx`") from err
    try:
        return onnx.load(str(path)).graph
    except Exception as err:  # onnx raises DecodeError and others for files that are not ONNX
        raise ValueError(f"{path} is not a readable ONNX model: {err}") from err


def _reorder_gates(array: np.ndarray, hidden: int) -> np.ndarray:
    blocks = [array[k * hidden : (k + 1) * hidden] for k in _ONNX_TO_TORCH_GATES]
    return np.concatenate(blocks, axis=0)


def _lstm_tensors(graph, initializers: dict[str, np.ndarray], module: str, hidden: int) -> dict[str, np.ndarray]:
    """Return the PyTorch state-dict entries of one LSTM from its ONNX node."""
    node_name = f"/{module}/LSTM"
    nodes = [n for n in graph.node if n.op_type == "LSTM" and n.name == node_name]
    if len(nodes) != 1:
        raise KeyError(f"LSTM node {node_name!r} not found")
    node = nodes[0]
    directions = [a.s.decode() for a in node.attribute if a.name == "direction"]
    if directions and directions[0] != "forward":
        raise KeyError(f"LSTM node {node_name!r} has direction {directions[0]!r}, expected 'forward'")
    w, r, b = (initializers[name] for name in node.input[1:4])
    return {
        f"{module}.weight_ih_l0": _reorder_gates(w[0], hidden),
        f"{module}.weight_hh_l0": _reorder_gates(r[0], hidden),
        f"{module}.bias_ih_l0": _reorder_gates(b[0, : 4 * hidden], hidden),
        f"{module}.bias_hh_l0": _reorder_gates(b[0, 4 * hidden :], hidden),
    }


def _onnx_state_dict(graph, model: DeepJet) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for key in model.state_dict():
        if key.endswith("num_batches_tracked") or key.split(".")[0] in _LSTM_MODULES:
            continue
        if key not in initializers:
            raise KeyError(f"initializer {key!r} not found")
        state[key] = initializers[key]
    for module in _LSTM_MODULES:
        state.update(_lstm_tensors(graph, initializers, module, getattr(model, module).hidden_size))
    return state


#: ONNX defaults of the BatchNormalization attributes, used where a node omits them.
_ONNX_BATCHNORM_DEFAULTS = {"epsilon": 1e-5, "momentum": 0.9}


def _batchnorm_attribute(graph, name: str) -> float:
    """Return the one value of a BatchNormalization attribute shared by all nodes."""
    values = set()
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        attribute_values = [a.f for a in node.attribute if a.name == name]
        values.add(round(attribute_values[0] if attribute_values else _ONNX_BATCHNORM_DEFAULTS[name], 7))
    if len(values) != 1:
        raise KeyError(f"expected one BatchNorm {name} for all layers, found {sorted(values)}")
    return float(values.pop())


def import_onnx_deepjet(path: str | Path, *, verify: bool = True) -> DeepJet:
    """Build a ``DeepJet`` (eval mode) with the weights of a PyTorch-exported ONNX DeepJet.

    Method: initializers are matched to ``DeepJet.state_dict()`` keys by name, LSTM weights
    through the LSTM nodes, with gates reordered from ONNX ``iofc`` to PyTorch ``ifgo``.
    The BatchNorm epsilon and momentum (which only matters for further training) are read
    from the graph, where ONNX stores ``1 - momentum`` of PyTorch (0.4 for the CMS 0.6).

    Matching names do not prove that the graph computes what ``DeepJet.forward`` does, so
    with ``verify=True`` both run on ``VERIFY_JETS`` synthetic jets and the import fails
    when their probabilities differ by more than ``VERIFY_TOLERANCE``.

    Raises ``ValueError`` naming the file when it is not an ONNX model, not a PyTorch
    DeepJet export (a missing initializer or node, or a tensor of another shape), or when
    the verification fails.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} not found")
    graph = _load_onnx_graph(path)
    try:
        # ONNX momentum weights the running statistic, PyTorch momentum the new batch value.
        momentum = round(1.0 - _batchnorm_attribute(graph, "momentum"), 7)
        model = DeepJet(batchnorm_eps=_batchnorm_attribute(graph, "epsilon"), batchnorm_momentum=momentum)
        state = _onnx_state_dict(graph, model)
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"{path} is not an ONNX export of the PyTorch DeepJet ({err}); "
            "networks converted from Keras can only be run through onnxruntime"
        ) from None
    _load_weights(model, state, path)
    if verify:
        difference = _max_difference(path, model, random_deepjet_inputs(VERIFY_JETS, seed=0))
        if difference > VERIFY_TOLERANCE:
            raise ValueError(
                f"{path}: the imported DeepJet differs from onnxruntime by {difference:.3g} in probability "
                f"(allowed {VERIFY_TOLERANCE:g}); the graph computes something other than DeepJet.forward"
            )
    logger.info("imported %d tensors from %s into DeepJet", len(state), path)
    return model


def _load_weights(model: DeepJet, state: dict[str, np.ndarray], path: Path) -> None:
    tensors = {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{path}: tensor shapes do not match the DeepJet architecture: {err}") from None
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing weights {missing}, unexpected weights {unexpected}")
    model.eval()


def _max_difference(path: Path, model: DeepJet, inputs: tuple[np.ndarray, ...]) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [group.onnx_name for group in DEEPJET_GROUPS] + [JET_PT.onnx_name]
    reference = session.run([ONNX_OUTPUT], dict(zip(names, inputs)))[0]
    with torch.no_grad():
        logits = model(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in inputs[:4]))
    return float(np.abs(torch.softmax(logits, dim=1).numpy() - reference).max())


def onnx_agreement(path: str | Path, inputs: tuple[np.ndarray, ...]) -> float:
    """Return the max absolute difference of probabilities, onnxruntime vs the imported copy.

    ``inputs`` is ``(glob, cpf, npf, sv, jet_pt)`` as in ``advcalib.spec`` (for example
    from ``advcalib.models.synthetic.random_deepjet_inputs``). Both run on the CPU.
    """
    path = Path(path)
    return _max_difference(path, import_onnx_deepjet(path, verify=False), inputs)
