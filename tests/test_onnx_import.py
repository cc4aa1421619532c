"""Tests of the import of CMS DeepJet ONNX networks into torch and of ONNX taggers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from advcalib import spec
from advcalib.models import DeepJet, import_onnx_deepjet, load_tagger
from advcalib.models.onnx_import import _reorder_gates, onnx_agreement
from advcalib.models.synthetic import random_deepjet_inputs

#: Required agreement of the torch copy with onnxruntime on the probabilities.
TOLERANCE = 1e-4


torch.set_num_threads(1)


def _onnxruntime_probs(path, jets):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [g.onnx_name for g in spec.DEEPJET_GROUPS] + [spec.JET_PT.onnx_name]
    return session.run(["ID_pred/Softmax:0"], dict(zip(names, jets)))[0]


def _torch_probs(model, jets):
    with torch.no_grad():
        return torch.softmax(model(*(torch.from_numpy(a) for a in jets[:4])), dim=1).numpy()


def test_gate_reorder_onnx_to_torch():
    # ONNX blocks i, o, f, c (hidden size 2) must come out as PyTorch i, f, c, o.
    onnx_blocks = np.repeat(np.array([0, 1, 2, 3]), 2)
    np.testing.assert_array_equal(_reorder_gates(onnx_blocks, 2), np.repeat(np.array([0, 2, 3, 1]), 2))


def test_import_fills_every_weight(onnx_run3):
    model = import_onnx_deepjet(onnx_run3)
    assert isinstance(model, DeepJet)
    assert not model.training
    fresh = DeepJet()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert not torch.equal(value, fresh.state_dict()[key]), f"{key} kept its initial value"


def test_import_reads_batchnorm_settings(onnx_run3):
    model = import_onnx_deepjet(onnx_run3)
    assert model.global_bn.eps == pytest.approx(1e-3)
    assert model.config["batchnorm_momentum"] == 0.6


@pytest.mark.parametrize("n_jets", [1, 500], ids=["one-jet", "500-jets"])
def test_import_agrees_with_onnxruntime(onnx_run3, n_jets):
    jets = random_deepjet_inputs(n_jets, seed=11)
    reference = _onnxruntime_probs(onnx_run3, jets)
    probs = _torch_probs(import_onnx_deepjet(onnx_run3), jets)
    assert np.abs(probs - reference).max() < TOLERANCE
    # Softmax outputs that agree only because all are uniform would hide a broken import.
    assert reference.max(axis=1).mean() > 0.3


def test_onnx_agreement_measures_difference(onnx_run3):
    difference = onnx_agreement(onnx_run3, random_deepjet_inputs(300, seed=21))
    assert 0.0 < difference < TOLERANCE


def test_import_agrees_on_padded_jets(onnx_run3):
    # Jets without any candidate or vertex: every sequence is padding only.
    glob, cpf, npf, sv, jet_pt = random_deepjet_inputs(20, seed=5)
    jets = (glob, np.zeros_like(cpf), np.zeros_like(npf), np.zeros_like(sv), jet_pt)
    probs = _torch_probs(import_onnx_deepjet(onnx_run3), jets)
    assert np.abs(probs - _onnxruntime_probs(onnx_run3, jets)).max() < TOLERANCE


def test_import_agrees_on_real_jets(onnx_run3, real_pfnano):
    inputs_module = pytest.importorskip("advcalib.inputs")
    if not hasattr(inputs_module, "build_deepjet_inputs"):
        pytest.skip("advcalib.inputs does not provide build_deepjet_inputs")
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    branches = inputs_module.required_branches("pfcands")
    events = NanoEventsFactory.from_root(
        {str(real_pfnano): "Events"}, schemaclass=PFNanoAODSchema, mode="eager", uproot_options={"filter_name": branches}
    ).events()
    inputs = inputs_module.build_deepjet_inputs(events, source="pfcands")
    jets = (*inputs.arrays(), inputs.jet_pt)
    assert len(jets[0]) == 64
    reference = _onnxruntime_probs(onnx_run3, jets)
    probs = _torch_probs(import_onnx_deepjet(onnx_run3), jets)
    assert np.abs(probs - reference).max() < TOLERANCE
    np.testing.assert_allclose(load_tagger(onnx_run3, device="cpu").predict(inputs), reference, atol=1e-6)


def test_import_rejects_keras_network(onnx_run2):
    with pytest.raises(ValueError, match=r"DeepFlavourV03_10X\.onnx is not an ONNX export of the PyTorch DeepJet"):
        import_onnx_deepjet(onnx_run2)


def test_import_rejects_graph_computing_otherwise(onnx_run3, tmp_path):
    # Same weight names, but the LSTM outputs are read at the first step instead of the last.
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(onnx_run3))
    (gather_index,) = [node for node in model.graph.node if node.name == "/Constant_4"]
    gather_index.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(0, dtype=np.int64)))
    path = tmp_path / "first_step.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"first_step\.onnx: the imported DeepJet differs from onnxruntime"):
        import_onnx_deepjet(path)
    assert isinstance(import_onnx_deepjet(path, verify=False), DeepJet)


def test_import_rejects_non_onnx_file(tmp_path):
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"\x00 definitely not protobuf")
    with pytest.raises(ValueError, match=r"fake\.onnx"):
        import_onnx_deepjet(path)


def test_onnx_tagger_module_is_torch_copy(onnx_run3):
    tagger = load_tagger(onnx_run3, device="cpu")
    assert (tagger.kind, tagger.architecture) == ("onnx", "DeepJet")
    assert isinstance(tagger.module, DeepJet)
    jets = random_deepjet_inputs(50, seed=2)
    probs = tagger.predict(jets, batch_size=16)
    np.testing.assert_allclose(probs, _onnxruntime_probs(onnx_run3, jets), atol=1e-6)
    assert np.abs(_torch_probs(tagger.module, jets) - probs).max() < TOLERANCE


def test_onnx_tagger_module_gives_input_gradients(onnx_run3):
    module = load_tagger(onnx_run3, device="cpu").module
    inputs = [torch.from_numpy(a).requires_grad_() for a in random_deepjet_inputs(4, seed=9)[:4]]
    module(*inputs)[:, 0].sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in inputs)
    assert inputs[1].grad.abs().sum() > 0


def test_onnx_tagger_uses_global_jet_pt_without_input5(onnx_run3):
    tagger = load_tagger(onnx_run3, device="cpu")
    jets = random_deepjet_inputs(10, seed=4)
    np.testing.assert_array_equal(tagger.predict(jets[:4]), tagger.predict(jets))


def test_keras_onnx_tagger_runs_without_module(onnx_run2):
    tagger = load_tagger(onnx_run2, device="cpu")
    assert tagger.module is None
    probs = tagger.predict(random_deepjet_inputs(8, seed=1))
    assert probs.shape == (8, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_onnx_tagger_pickles_without_session(onnx_run3):
    tagger = load_tagger(onnx_run3, device="cpu")
    jets = random_deepjet_inputs(6, seed=8)
    expected = tagger.predict(jets)
    assert tagger._session is not None
    assert tagger.__getstate__()["_session"] is None
    clone = pickle.loads(pickle.dumps(tagger))
    assert clone._session is None
    np.testing.assert_array_equal(clone.predict(jets), expected)
    assert isinstance(clone.module, DeepJet)


def _tiny_onnx(path, *, global_features: int):
    """Write an ONNX model with DeepJet's input names whose global input has ``global_features``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shapes = {"input_1": ["N", global_features], "input_2": ["N", 25, 16], "input_3": ["N", 25, 6],
              "input_4": ["N", 4, 12], "input_5": ["N", 1]}
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()]
    weight = helper.make_tensor("w", TensorProto.FLOAT, [global_features, 6], [0.0] * (global_features * 6))
    nodes = [helper.make_node("MatMul", ["input_1", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["ID_pred/Softmax:0"], axis=1)]
    output = helper.make_tensor_value_info("ID_pred/Softmax:0", TensorProto.FLOAT, ["N", 6])
    graph = helper.make_graph(nodes, "tiny", inputs, [output], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_load_rejects_onnx_with_other_input_shape(tmp_path):
    path = _tiny_onnx(tmp_path / "narrow.onnx", global_features=14)
    with pytest.raises(ValueError, match=r"narrow\.onnx is not a DeepJet ONNX network.*input input_1 \[N, 14\], expected \[N, 15\]"):
        load_tagger(path)


def test_load_accepts_onnx_with_deepjet_signature(tmp_path):
    tagger = load_tagger(_tiny_onnx(tmp_path / "tiny.onnx", global_features=15), device="cpu")
    assert tagger.module is None
    np.testing.assert_allclose(tagger.predict(random_deepjet_inputs(3)), 1 / 6, atol=1e-6)


def test_load_rejects_garbage_onnx(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match=r"garbage\.onnx is not a readable ONNX model"):
        load_tagger(path)
