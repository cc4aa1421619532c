"""Tests of the DeepJet and DeepCSV networks, discriminators, checkpoints and taggers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from advcalib import spec
from advcalib.models import (
    DeepCSV,
    DeepJet,
    Tagger,
    discriminators,
    load_checkpoint,
    load_tagger,
    resolve_device,
    save_checkpoint,
)
from advcalib.models import loading
from advcalib.models.synthetic import random_deepjet_inputs
from advcalib.models.onnx_tagger import onnx_providers

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")

DEEPJET_PARAMETERS = 266_252
DEEPCSV_PARAMETERS = 47_636


torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tensors(arrays):
    return [torch.from_numpy(a) for a in arrays[:4]]


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics, as after training."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(*_tensors(random_deepjet_inputs(64, seed=7)))
    return model.eval()


@pytest.fixture(scope="module")
def deepjet() -> DeepJet:
    torch.manual_seed(0)
    return _trained_like(DeepJet())


@pytest.fixture(scope="module")
def scripted_path(tmp_path_factory, deepjet) -> Path:
    """The ``deepjet`` fixture saved as TorchScript (scripted once per module, which is slow)."""
    path = tmp_path_factory.mktemp("torchscript") / "deepjet.ts"
    torch.jit.save(torch.jit.script(deepjet), str(path))
    return path


@pytest.fixture
def jets() -> tuple[np.ndarray, ...]:
    return random_deepjet_inputs(37, seed=3)


# Architecture


def test_deepjet_parameter_count():
    n_parameters = sum(p.numel() for p in DeepJet().parameters())
    assert n_parameters == DEEPJET_PARAMETERS
    assert abs(n_parameters - 266_000) / 266_000 < 0.01


def test_deepjet_input_sizes_follow_spec():
    model = DeepJet()
    assert model.global_bn.num_features == len(spec.GLOBAL.features)
    assert model.InputProcess.cpf_conv1.lin.in_channels == len(spec.CHARGED.features)
    assert model.InputProcess.npf_conv1.lin.in_channels == len(spec.NEUTRAL.features)
    assert model.InputProcess.vtx_conv1.lin.in_channels == len(spec.VERTEX.features)
    assert model.DenseClassifier.LinLayer1.lin.in_features == 15 + 150 + 50 + 50


def test_deepjet_last_convolutions_have_no_batchnorm():
    process = DeepJet().InputProcess
    for last in (process.cpf_conv4, process.npf_conv3, process.vtx_conv4):
        assert last.bn is None
    assert process.cpf_conv3.bn is not None


@pytest.mark.parametrize("n_jets", [1, 2, 37], ids=["one-jet", "two-jets", "37-jets"])
def test_deepjet_output_shape(deepjet, n_jets):
    logits = deepjet(*_tensors(random_deepjet_inputs(n_jets)))
    assert logits.shape == (n_jets, len(spec.DEEPJET_CLASSES))
    assert torch.isfinite(logits).all()


def test_deepjet_one_jet_matches_batch(deepjet, jets):
    batch = deepjet(*_tensors(jets))
    single = deepjet(*_tensors(tuple(a[5:6] for a in jets)))
    torch.testing.assert_close(single[0], batch[5], atol=1e-5, rtol=1e-5)


def test_deepjet_candidate_order_matters(deepjet, jets):
    # The LSTMs read sequences, so swapping two filled charged slots changes the output.
    glob, cpf, npf, sv, _ = jets
    swapped = cpf.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    changed = deepjet(*_tensors((glob, swapped, npf, sv)))
    assert not torch.allclose(changed, deepjet(*_tensors(jets)))


def test_deepjet_input_gradients(deepjet, jets):
    inputs = [t.requires_grad_() for t in _tensors(jets)]
    deepjet(*inputs)[:, 0].sum().backward()
    for tensor in inputs:
        assert tensor.grad is not None
        assert tensor.grad.abs().sum() > 0


def test_deepcsv_shapes_and_parameters():
    model = DeepCSV().eval()
    assert sum(p.numel() for p in model.parameters()) == DEEPCSV_PARAMETERS
    x = torch.randn(3, len(spec.DEEPCSV.features))
    assert model(x).shape == (3, len(spec.DEEPCSV_CLASSES))
    assert model(x[:1]).shape == (1, len(spec.DEEPCSV_CLASSES))


def test_deepjet_rejects_invalid_dropout():
    with pytest.raises(ValueError, match="dropout"):
        DeepJet(dropout=1.5)


# Discriminators


def _probs(*rows):
    return np.array(rows, dtype=np.float32)


def test_discriminators_known_values():
    # b=0.1, bb=0.05, lepb=0.05, c=0.2, uds=0.4, g=0.2
    result = discriminators(_probs([0.1, 0.05, 0.05, 0.2, 0.4, 0.2]))
    assert result["BvsAll"][0] == pytest.approx(0.2)
    assert result["BvsL"][0] == pytest.approx(0.2 / 0.8)
    assert result["CvsL"][0] == pytest.approx(0.2 / 0.8)
    assert result["CvsB"][0] == pytest.approx(0.2 / 0.4)
    assert result["QvsG"][0] == pytest.approx(0.2 / 0.6)


def test_discriminators_zero_denominators_give_minus_one():
    result = discriminators(_probs([0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]))
    for name in ("BvsL", "CvsL", "CvsB", "QvsG"):
        assert result[name][0] == -1.0
    assert result["BvsAll"][0] == 0.0
    assert result["BvsL"][1] == -1.0  # b + uds + g = 0
    assert result["QvsG"][1] == -1.0
    assert result["CvsL"][1] == 1.0
    assert result["CvsB"][2] == 0.0
    assert result["CvsL"][2] == -1.0


def test_discriminators_negative_denominator_gives_minus_one():
    result = discriminators(_probs([0.2, 0, 0, 0.1, -0.5, 0.1]))
    assert result["BvsL"][0] == -1.0
    assert result["QvsG"][0] == -1.0


def test_discriminators_keep_type_and_dtype():
    probs = _probs([0.1, 0.05, 0.05, 0.2, 0.4, 0.2])
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in discriminators(probs).values())
    tensors = discriminators(torch.from_numpy(probs))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in tensors.values())


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.just(6)), elements=st.floats(0, 1, width=32)))
def test_discriminators_numpy_and_torch_agree(probs):
    from_numpy = discriminators(probs)
    from_torch = discriminators(torch.from_numpy(probs))
    for name, values in from_numpy.items():
        np.testing.assert_allclose(values, from_torch[name].numpy(), rtol=1e-6, atol=1e-7)
    assert (from_numpy["BvsAll"] >= 0).all()
    for name in ("BvsL", "CvsL", "CvsB", "QvsG"):
        ratio = from_numpy[name]
        assert ((ratio == -1.0) | ((ratio >= 0.0) & (ratio <= 1.0 + 1e-6))).all(), name


def test_discriminators_gradient_is_finite_at_zero_denominator():
    probs = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.2, 0.3, 0.2]], requires_grad=True)
    sum(v.sum() for v in discriminators(probs).values()).backward()
    assert torch.isfinite(probs.grad).all()


def test_discriminators_reject_wrong_shape():
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        discriminators(np.zeros((3, 4), dtype=np.float32))


def test_discriminators_reproduce_nanoaod_columns(real_pfnano):
    import awkward as ak
    import uproot

    columns = {
        "b": "Jet_btagDeepFlavB_b", "bb": "Jet_btagDeepFlavB_bb", "lepb": "Jet_btagDeepFlavB_lepb",
        "c": "Jet_btagDeepFlavC", "uds": "Jet_btagDeepFlavUDS", "g": "Jet_btagDeepFlavG",
    }
    stored = {"BvsAll": "Jet_btagDeepFlavB", "CvsL": "Jet_btagDeepFlavCvL", "CvsB": "Jet_btagDeepFlavCvB", "QvsG": "Jet_btagDeepFlavQG"}
    with uproot.open(real_pfnano) as file:
        table = file["Events"].arrays(list(columns.values()) + list(stored.values()))
    flat = {name: ak.to_numpy(ak.flatten(table[name])) for name in table.fields}
    probs = np.stack([flat[columns[c]] for c in spec.DEEPJET_CLASSES], axis=1)
    result = discriminators(probs)
    for name, branch in stored.items():
        # NanoAOD keeps 10 mantissa bits, a relative precision of about 1e-3.
        np.testing.assert_allclose(result[name], flat[branch], atol=2e-3, err_msg=name)


# Checkpoints


def _feature_scales():
    return {group.name: np.full(group.shape, 0.01, dtype=np.float32) for group in spec.DEEPJET_GROUPS}


def test_checkpoint_round_trip(tmp_path, deepjet, jets):
    path = save_checkpoint(
        tmp_path / "model.pt", deepjet, config={"epsilon": 0.01}, feature_scales=_feature_scales(), metadata={"epochs": 3}
    )
    model, info = load_checkpoint(path)
    torch.testing.assert_close(model(*_tensors(jets)), deepjet(*_tensors(jets)))
    assert info["architecture"] == "DeepJet"
    assert info["config"]["epsilon"] == 0.01
    assert info["config"]["model"] == deepjet.config
    assert info["metadata"] == {"epochs": 3}
    np.testing.assert_array_equal(info["feature_scales"]["charged"], _feature_scales()["charged"])
    assert not model.training


def test_checkpoint_keeps_model_settings(tmp_path):
    model = DeepJet(dropout=0.3, batchnorm_momentum=0.1)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, config={}, feature_scales=None, metadata={}))
    assert loaded.config == model.config
    assert loaded.DenseClassifier.LinLayer1.dropout.p == 0.3


def test_checkpoint_deepcsv_round_trip(tmp_path):
    model = DeepCSV().eval()
    scales = {"deepcsv": np.ones(len(spec.DEEPCSV.features), dtype=np.float32)}
    path = save_checkpoint(tmp_path / "csv.pt", model, config={}, feature_scales=scales, metadata={})
    loaded, info = load_checkpoint(path)
    x = torch.randn(4, len(spec.DEEPCSV.features))
    torch.testing.assert_close(loaded(x), model(x))
    assert info["architecture"] == "DeepCSV"


def test_checkpoint_refuses_to_overwrite(tmp_path, deepjet):
    path = save_checkpoint(tmp_path / "m.pt", deepjet, config={}, feature_scales=None, metadata={})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(path, deepjet, config={}, feature_scales=None, metadata={})
    save_checkpoint(path, deepjet, config={}, feature_scales=None, metadata={"again": True}, overwrite=True)
    assert load_checkpoint(path)[1]["metadata"] == {"again": True}


def test_checkpoint_rejects_wrong_feature_scale_shape(tmp_path, deepjet):
    scales = _feature_scales()
    scales["vertex"] = np.ones((5, 12), dtype=np.float32)
    with pytest.raises(ValueError, match=r"feature_scales\['vertex'\] has shape \(5, 12\), expected \(4, 12\)"):
        save_checkpoint(tmp_path / "m.pt", deepjet, config={}, feature_scales=scales, metadata={})


def test_checkpoint_stores_plain_values(tmp_path, deepjet):
    metadata = {"loss": np.float32(0.5), "data": tmp_path / "train.root", "epochs": (1, 2)}
    path = save_checkpoint(tmp_path / "m.pt", deepjet, config={}, feature_scales=None, metadata=metadata)
    stored = load_checkpoint(path)[1]["metadata"]
    assert stored == {"loss": 0.5, "data": str(tmp_path / "train.root"), "epochs": (1, 2)}
    assert type(stored["loss"]) is float


def test_checkpoint_rejects_unstorable_metadata(tmp_path, deepjet):
    with pytest.raises(ValueError, match=r"metadata\['sampler'\] has type object"):
        save_checkpoint(tmp_path / "m.pt", deepjet, config={}, feature_scales=None, metadata={"sampler": object()})
    assert not (tmp_path / "m.pt").exists()


def test_checkpoint_rejects_other_modules(tmp_path):
    with pytest.raises(ValueError, match="only DeepJet, DeepCSV"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), config={}, feature_scales=None, metadata={})


# Loading and load errors


@pytest.fixture
def checkpoint_path(tmp_path, deepjet) -> Path:
    return save_checkpoint(tmp_path / "tagger.pt", deepjet, config={}, feature_scales=_feature_scales(), metadata={})


def test_load_tagger_checkpoint(checkpoint_path, deepjet, jets):
    tagger = load_tagger(checkpoint_path, device="cpu")
    assert isinstance(tagger, Tagger)
    assert (tagger.name, tagger.kind, tagger.device.type) == ("tagger", "checkpoint", "cpu")
    probs = tagger.predict(jets, batch_size=8)
    expected = torch.softmax(deepjet(*_tensors(jets)), dim=1).detach().numpy()
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert tagger.feature_scales["global"].shape == spec.GLOBAL.shape


def test_predict_independent_of_batch_size(checkpoint_path, jets):
    tagger = load_tagger(checkpoint_path, device="cpu")
    np.testing.assert_allclose(tagger.predict(jets, batch_size=1), tagger.predict(jets, batch_size=4096), atol=1e-6)


def test_predict_accepts_inputs_object(checkpoint_path, jets):
    class Inputs:
        jet_pt = jets[4]

        def arrays(self):
            return jets[:4]

    tagger = load_tagger(checkpoint_path, device="cpu")
    np.testing.assert_array_equal(tagger.predict(Inputs()), tagger.predict(jets[:4]))


def test_predict_read_only_arrays_without_warning(checkpoint_path, jets):
    import warnings

    read_only = tuple(a.copy() for a in jets)
    for array in read_only:
        array.setflags(write=False)
    tagger = load_tagger(checkpoint_path, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = tagger.predict(read_only)
    np.testing.assert_array_equal(probs, tagger.predict(jets))


def test_predict_empty_inputs(checkpoint_path):
    empty = tuple(np.zeros((0, *g.shape), dtype=np.float32) for g in spec.DEEPJET_GROUPS)
    assert load_tagger(checkpoint_path, device="cpu").predict(empty).shape == (0, 6)


def test_predict_rejects_wrong_input_shape(checkpoint_path, jets):
    glob, cpf, npf, sv, _ = jets
    with pytest.raises(ValueError, match=r"vertex inputs have shape \(37, 5, 12\), expected \[N, 4, 12\]"):
        load_tagger(checkpoint_path, device="cpu").predict((glob, cpf, npf, np.zeros((37, 5, 12))))


def test_predict_rejects_invalid_batch_size(checkpoint_path, jets):
    with pytest.raises(ValueError, match="batch_size"):
        load_tagger(checkpoint_path, device="cpu").predict(jets, batch_size=0)


def test_load_tagger_deepcsv_checkpoint(tmp_path):
    model = DeepCSV().eval()
    path = save_checkpoint(tmp_path / "csv.pt", model, config={}, feature_scales=None, metadata={})
    tagger = load_tagger(path, device="cpu")
    x = np.random.default_rng(1).normal(size=(9, len(spec.DEEPCSV.features))).astype(np.float32)
    probs = tagger.predict(x, batch_size=4)
    assert tagger.classes == spec.DEEPCSV_CLASSES
    np.testing.assert_allclose(probs, torch.softmax(model(torch.from_numpy(x)), dim=1).detach().numpy(), atol=1e-6)


def test_torchscript_round_trip(scripted_path, deepjet, jets):
    tagger = load_tagger(scripted_path, device="cpu")
    assert (tagger.kind, tagger.architecture) == ("torchscript", "DeepJet")
    expected = torch.softmax(deepjet(*_tensors(jets)), dim=1).detach().numpy()
    np.testing.assert_allclose(tagger.predict(jets), expected, atol=1e-6)


def test_torchscript_deepcsv_is_recognised(tmp_path):
    model = DeepCSV().eval()
    path = tmp_path / "deepcsv.torchscript"
    torch.jit.save(torch.jit.script(model), str(path))
    tagger = load_tagger(path, device="cpu")
    assert tagger.architecture == "DeepCSV"
    assert tagger.predict(np.zeros((3, len(spec.DEEPCSV.features)), dtype=np.float32)).shape == (3, 4)


def test_load_rejects_garbage_checkpoint(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match=r"broken\.pt is not an advcalib checkpoint"):
        load_tagger(path)


def test_load_rejects_plain_state_dict(tmp_path, deepjet):
    path = tmp_path / "weights.pt"
    torch.save(deepjet.state_dict(), path)
    with pytest.raises(ValueError, match=r"weights\.pt is not an advcalib checkpoint: expected a dict with format"):
        load_tagger(path)


def test_load_rejects_torchscript_named_pt(tmp_path, scripted_path):
    path = tmp_path / "scripted.pt"
    path.write_bytes(scripted_path.read_bytes())
    with pytest.raises(ValueError, match="TorchScript archive.*suffix .ts"):
        load_tagger(path)


def test_load_rejects_checkpoint_named_ts(checkpoint_path, tmp_path):
    path = tmp_path / "model.ts"
    path.write_bytes(checkpoint_path.read_bytes())
    with pytest.raises(ValueError, match=r"model\.ts is not a TorchScript archive"):
        load_tagger(path)


def test_load_rejects_checkpoint_with_other_input_shape(tmp_path, deepjet):
    path = save_checkpoint(tmp_path / "m.pt", deepjet, config={}, feature_scales=None, metadata={})
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["global_bn.weight"] = torch.ones(14)
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"m\.pt: weights do not match the DeepJet architecture"):
        load_tagger(path)


class _FourteenGlobals(torch.nn.Module):
    """A TorchScript-able network that takes 14 global features instead of 15."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(14, 6)

    def forward(self, glob: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        return self.dense(glob)


def test_load_rejects_torchscript_with_other_input_shape(tmp_path):
    path = tmp_path / "narrow.ts"
    torch.jit.save(torch.jit.script(_FourteenGlobals()), str(path))
    with pytest.raises(ValueError, match=r"narrow\.ts: TorchScript model does not take DeepJet inputs \(global \[N, 15\]"):
        load_tagger(path)


def test_load_rejects_unknown_suffix(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown model suffix '.h5'"):
        load_tagger(path)


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt not found"):
        load_tagger(tmp_path / "absent.pt")


def test_packaged_model_missing_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(loading.resources, "files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match="packaged model 'nominal' is not installed"):
        load_tagger("nominal")


def test_packaged_model_resolves_to_package_data(tmp_path, monkeypatch, deepjet):
    (tmp_path / "data" / "models").mkdir(parents=True)
    save_checkpoint(tmp_path / "data" / "models" / "adversarial.pt", deepjet, config={}, feature_scales=None, metadata={})
    monkeypatch.setattr(loading.resources, "files", lambda package: tmp_path)
    tagger = load_tagger("adversarial", device="cpu")
    assert (tagger.name, tagger.kind) == ("adversarial", "checkpoint")


# Pickling and devices


def test_checkpoint_tagger_pickles(checkpoint_path, jets):
    tagger = load_tagger(checkpoint_path, device="cpu")
    clone = pickle.loads(pickle.dumps(tagger))
    np.testing.assert_array_equal(clone.predict(jets), tagger.predict(jets))
    assert clone.feature_scales.keys() == tagger.feature_scales.keys()


def test_torchscript_tagger_pickles_without_module(scripted_path, jets):
    tagger = load_tagger(scripted_path, device="cpu")
    assert tagger.__getstate__()["_module"] is None
    clone = pickle.loads(pickle.dumps(tagger))
    np.testing.assert_array_equal(clone.predict(jets), tagger.predict(jets))


def test_resolve_device_automatic():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_resolve_device_rejects_missing_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_resolve_device_rejects_unknown_device():
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        resolve_device("gpu0")


def test_onnx_providers_for_cuda_device_keep_cpu_fallback():
    import onnxruntime

    providers = onnx_providers(torch.device("cuda", 1))
    assert providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
    else:
        assert providers == ["CPUExecutionProvider"]


def test_tagger_device_switch(checkpoint_path, jets):
    tagger = load_tagger(checkpoint_path, device="cpu")
    before = tagger.predict(jets)
    assert tagger.to(None) is tagger
    assert tagger.device == resolve_device(None)
    assert next(tagger.module.parameters()).device.type == tagger.device.type
    np.testing.assert_allclose(tagger.predict(jets), before, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_on_cuda_matches_cpu(checkpoint_path, jets):
    cpu = load_tagger(checkpoint_path, device="cpu").predict(jets)
    cuda = load_tagger(checkpoint_path, device="cuda").predict(jets)
    np.testing.assert_allclose(cuda, cpu, atol=1e-4)
