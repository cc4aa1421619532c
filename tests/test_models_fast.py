"""Fast DeepJet inference (folded BatchNorms, LSTMs over filled slots) and its use in Tagger.predict."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from advcalib.models import DeepJet, load_tagger, save_checkpoint
from advcalib.models.fast import FastDeepJet, sequence_lengths
from advcalib.models.synthetic import random_deepjet_inputs

#: Largest allowed difference from the eager DeepJet, on logits and on probabilities.
TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> DeepJet:
    """A DeepJet with random weights and BatchNorm statistics as after training."""
    torch.manual_seed(3)
    deepjet = DeepJet().train()
    with torch.no_grad():
        for seed in range(3):
            deepjet(*(torch.from_numpy(a) for a in random_deepjet_inputs(128, seed=seed)[:4]))
    return deepjet.eval()


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("fast") / "deepjet.pt"
    save_checkpoint(path, model, config={}, feature_scales=None, metadata={})
    return path


def _jets(n_jets: int, *, seed: int) -> list[torch.Tensor]:
    """Random realistic jets whose candidate counts cover empty and full sequences."""
    glob, cpf, npf, sv, _ = (torch.from_numpy(a) for a in random_deepjet_inputs(n_jets, seed=seed))
    cpf[0] = 0.0  # a jet without charged candidates
    if n_jets > 2:
        cpf[1], npf[1], sv[1] = 0.0, 0.0, 0.0  # every sequence padding only
        cpf[2, :, 0] = 1.0  # every charged slot filled
    return [glob, cpf, npf, sv]


def test_sequence_lengths_hand_built():
    x = torch.zeros(3, 5, 2)
    x[0, 0, 0] = 1.0
    x[1, 3, 1] = -2.0  # filled slot after an empty one counts up to it
    assert sequence_lengths(x).tolist() == [1, 4, 0]
    assert sequence_lengths(torch.zeros(0, 5, 2)).tolist() == []


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("bucket", [False, True], ids=["dense-lstm", "bucketed-lstm"])
@pytest.mark.parametrize("n_jets", [1, 7, 300], ids=["one-jet", "few-jets", "several-groups"])
def test_fast_deepjet_matches_eager(model, n_jets, bucket, fold):
    jets = _jets(n_jets, seed=5)
    with torch.inference_mode():
        expected = model(*jets)
        found = FastDeepJet(model, fold=fold, bucket=bucket, group_size=64, max_batch=128)(*jets)
    assert found.shape == expected.shape
    assert (found - expected).abs().max() < TOLERANCE


def test_fast_deepjet_all_padding_batch(model):
    glob, cpf, npf, sv = _jets(40, seed=6)
    jets = [glob, torch.zeros_like(cpf), torch.zeros_like(npf), torch.zeros_like(sv)]
    with torch.no_grad():
        difference = (FastDeepJet(model)(*jets) - model(*jets)).abs().max()
    assert difference < TOLERANCE


def test_fast_deepjet_empty_batch(model):
    jets = [x[:0] for x in _jets(3, seed=7)]
    with torch.no_grad():
        assert FastDeepJet(model)(*jets).shape == (0, 6)


def test_fast_deepjet_follows_weight_changes():
    deepjet = DeepJet().eval()
    fast = FastDeepJet(deepjet)
    jets = _jets(20, seed=8)
    with torch.no_grad():
        before = fast(*jets)
        deepjet.Linear.bias.add_(1.0)
        deepjet.cpf_lstm.weight_hh_l0.mul_(0.5)
        after = fast(*jets)
        expected = deepjet(*jets)
    assert (after - expected).abs().max() < TOLERANCE
    assert (after - before).abs().max() > 0.1


def test_fast_deepjet_rejects_training_mode():
    glob, cpf, npf, sv, _ = (torch.from_numpy(a) for a in random_deepjet_inputs(2))
    with pytest.raises(RuntimeError, match="eval mode"):
        FastDeepJet(DeepJet().train())(glob, cpf, npf, sv)


@pytest.mark.parametrize("n_jets", [1, 3, 2500], ids=["one-jet", "three-jets", "several-batches"])
def test_predict_fast_matches_eager(checkpoint_path, n_jets):
    jets = tuple(x.numpy() for x in _jets(n_jets, seed=9))
    fast = load_tagger(checkpoint_path, device="cpu")
    eager = load_tagger(checkpoint_path, device="cpu", fast=False)
    assert fast.fast is True
    assert eager.fast is False
    probs = fast.predict(jets, batch_size=1024)
    expected = eager.predict(jets, batch_size=1024)
    assert probs.shape == (n_jets, 6)
    assert np.abs(probs - expected).max() < TOLERANCE


def test_predict_switches_fast_off_at_runtime(checkpoint_path):
    jets = tuple(x.numpy() for x in _jets(30, seed=10))
    tagger = load_tagger(checkpoint_path, device="cpu")
    fast = tagger.predict(jets)
    assert tagger._fast_module is not None
    tagger.fast = False
    eager = tagger.predict(jets)
    with torch.no_grad():
        logits = tagger.module(*(torch.from_numpy(a) for a in jets))
    np.testing.assert_array_equal(eager, torch.softmax(logits, dim=1).numpy())
    assert np.abs(fast - eager).max() < TOLERANCE


def test_tagger_module_stays_plain_deepjet(checkpoint_path):
    tagger = load_tagger(checkpoint_path, device="cpu")
    tagger.predict(tuple(x.numpy() for x in _jets(5, seed=11)))
    assert type(tagger.module) is DeepJet
    inputs = [x.requires_grad_() for x in _jets(4, seed=12)]
    tagger.module(*inputs)[:, 0].sum().backward()
    assert inputs[1].grad is not None
    assert inputs[1].grad.abs().sum() > 0


def test_fast_tagger_pickles_without_wrapper(checkpoint_path):
    jets = tuple(x.numpy() for x in _jets(12, seed=13))
    tagger = load_tagger(checkpoint_path, device="cpu")
    expected = tagger.predict(jets)
    assert tagger.__getstate__()["_fast_module"] is None
    clone = pickle.loads(pickle.dumps(tagger))
    assert clone.fast is True
    assert clone._fast_module is None
    np.testing.assert_array_equal(clone.predict(jets), expected)
    assert clone._fast_module is not None
    eager_clone = pickle.loads(pickle.dumps(load_tagger(checkpoint_path, device="cpu", fast=False)))
    assert eager_clone.fast is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_fast_on_cuda_matches_eager(checkpoint_path):
    jets = tuple(x.numpy() for x in _jets(700, seed=14))
    fast = load_tagger(checkpoint_path, device="cuda").predict(jets)
    eager = load_tagger(checkpoint_path, device="cuda", fast=False).predict(jets)
    cpu = load_tagger(checkpoint_path, device="cpu", fast=False).predict(jets)
    assert np.abs(fast - eager).max() < TOLERANCE
    assert np.abs(fast - cpu).max() < 1e-4
