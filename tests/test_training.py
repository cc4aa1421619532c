"""Training: truth classes, weights, the loop, resume and the train command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advcalib import spec
from advcalib.attacks import feature_scales
from advcalib.models import DeepJet, load_checkpoint
from advcalib.training import JetSample, TrainConfig, fit, parse_epsilon_per_flavour, split_sample
from advcalib.training.labels import CLASS_INDEX, labels_from_flavsplit, labels_from_hadron_truth
from advcalib.training.sample import flavour_epsilon, to_tensors
from advcalib.training.weights import ABSETA_EDGES, PT_EDGES, reference_weights

torch.set_num_threads(1)
B, BB, LEPB, C, UDS, G = (CLASS_INDEX[name] for name in spec.DEEPJET_CLASSES)


def toy_sample(n: int, *, seed: int = 0) -> JetSample:
    """Jets whose class shifts a few continuous inputs, so a network can learn it."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([B, LEPB, C, UDS, G], size=n)
    arrays = []
    for group in spec.DEEPJET_GROUPS:
        values = rng.normal(0.0, 1.0, size=(n, *group.shape)).astype(np.float32)
        shift = np.where(np.isin(labels, [B, LEPB]), 2.0, np.where(labels == C, 1.0, 0.0)).astype(np.float32)
        values[..., 0] += shift.reshape(-1, *([1] * (values.ndim - 2)))
        values = np.where(group.integer_mask(), np.round(np.abs(values)), values).astype(np.float32)
        arrays.append(values)
    pt = rng.uniform(25.0, 300.0, n).astype(np.float32)
    eta = rng.uniform(-2.4, 2.4, n).astype(np.float32)
    return JetSample(inputs=tuple(arrays), labels=labels, weights=np.ones(n, np.float32), pt=pt, eta=eta)


def eval_loss(model: torch.nn.Module, sample: JetSample) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(*to_tensors(sample.inputs, np.arange(len(sample))))
    return float(F.cross_entropy(logits, torch.as_tensor(sample.labels)))


def test_hadron_truth_classes():
    labels = labels_from_hadron_truth(
        hadron_flavour=np.array([5, 5, 5, 4, 0, 0, 0, 0, 5]),
        parton_flavour=np.array([5, -5, 21, 4, 21, -2, 3, 0, 5]),
        n_b_hadrons=np.array([1, 2, 1, 0, 0, 0, 0, 0, 2]),
        semileptonic=np.array([False, False, True, True, False, False, False, False, True]),
    )
    assert labels.tolist() == [B, BB, LEPB, C, G, UDS, UDS, -1, BB]


def test_flavsplit_classes():
    codes = np.array([500, 510, 511, 520, 521, 400, 410, 411, 1, 2, 0, 600, 999, 1000])
    expected = [B, BB, BB, LEPB, LEPB, C, C, C, UDS, UDS, G, -1, -1, -1]
    assert labels_from_flavsplit(codes).tolist() == expected


def test_real_pfnano_labels_follow_hadron_flavour(real_pfnano):
    import awkward as ak
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from advcalib.training.labels import jet_labels

    events = NanoEventsFactory.from_root({str(real_pfnano): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()
    counts = ak.to_numpy(ak.num(events.Jet))
    event_index = np.repeat(np.arange(len(events)), counts)
    jet_index = np.concatenate([np.arange(k) for k in counts])
    labels = jet_labels(events, event_index, jet_index)
    hadron = ak.to_numpy(ak.flatten(events.Jet.hadronFlavour))
    assert len(labels) == 64
    assert np.array_equal(np.isin(labels, [B, BB, LEPB]), hadron == 5)
    assert np.array_equal(labels == C, hadron == 4)
    assert np.all(np.isin(labels[hadron == 0], [UDS, G, -1]))


def test_weights_match_b_spectrum():
    rng = np.random.default_rng(2)
    n = 20_000
    labels = np.r_[np.full(n, B), np.full(n, UDS)]
    pt = np.r_[rng.uniform(30, 200, n), rng.exponential(40, n) + 20]
    eta = rng.uniform(-2.4, 2.4, 2 * n)
    weights = reference_weights(labels, pt, eta, max_weight=1e6)
    bins = (PT_EDGES, ABSETA_EDGES)
    b_hist, _, _ = np.histogram2d(pt[:n], np.abs(eta[:n]), bins=bins)
    light_hist, _, _ = np.histogram2d(pt[n:], np.abs(eta[n:]), bins=bins, weights=weights[n:])
    populated = light_hist > 0
    assert np.allclose(light_hist[populated] / light_hist.sum(), b_hist[populated] / b_hist.sum(), rtol=1e-6)
    assert weights[n:].sum() == pytest.approx(n, rel=1e-4)


def test_weights_need_b_jets():
    with pytest.raises(ValueError, match="no b jets"):
        reference_weights(np.array([UDS, G]), np.array([30.0, 40.0]), np.array([0.1, 0.2]))


def test_epsilon_per_flavour():
    parsed = parse_epsilon_per_flavour("b=0.02, c=0.005")
    values = flavour_epsilon(np.array([B, LEPB, C, UDS]), epsilon=0.01, per_flavour=parsed)
    assert values.tolist() == pytest.approx([0.02, 0.02, 0.005, 0.01])
    with pytest.raises(ValueError, match="FLAVOUR=VALUE"):
        parse_epsilon_per_flavour("b0.01")
    with pytest.raises(ValueError, match="unknown flavour"):
        TrainConfig(epsilon_per_flavour={"x": 0.1})


def test_split_is_disjoint_and_complete():
    sample = toy_sample(100)
    train, validation = split_sample(sample, validation_fraction=0.2, seed=3)
    assert len(train) == 80
    assert len(validation) == 20
    rows = {tuple(a) for a in train.inputs[0]} | {tuple(a) for a in validation.inputs[0]}
    assert len(rows) == 100


@pytest.mark.parametrize("adversarial", [None, "fgsm", "ngm"], ids=["clean", "fgsm", "ngm"])
def test_training_lowers_loss(tmp_path, adversarial):
    sample = toy_sample(384, seed=1)
    config = TrainConfig(epochs=3, batch_size=64, learning_rate=3e-3, adversarial=adversarial, seed=4)
    torch.manual_seed(0)
    model = DeepJet(dropout=0.0)
    before = eval_loss(model, sample)
    history = fit(model, sample, sample.take(np.arange(64)), config=config, feature_scales=feature_scales(sample.inputs), out_dir=tmp_path)
    assert eval_loss(model, sample) < before
    assert len(history) == 3
    assert history[0]["n_adversarial"] == (0 if adversarial is None else 384)


def test_adv_fraction_and_start_after(tmp_path):
    sample = toy_sample(256, seed=2)
    config = TrainConfig(epochs=2, batch_size=64, adversarial="fgsm", adv_fraction=0.5, start_after=1)
    history = fit(DeepJet(), sample, sample.take(np.arange(32)), config=config, feature_scales=feature_scales(sample.inputs), out_dir=tmp_path)
    assert history[0]["n_adversarial"] == 0
    assert 64 < history[1]["n_adversarial"] < 192


def test_checkpoints_every_epoch_and_best(tmp_path):
    sample = toy_sample(128, seed=5)
    config = TrainConfig(epochs=2, batch_size=64)
    scales = feature_scales(sample.inputs)
    fit(DeepJet(), sample, sample.take(np.arange(32)), config=config, feature_scales=scales, out_dir=tmp_path)
    for name in ("epoch_001.pt", "epoch_002.pt", "best.pt", "robustness_per_epoch.csv", "robustness_per_epoch.png"):
        assert (tmp_path / name).exists(), name
    _, info = load_checkpoint(tmp_path / "epoch_002.pt")
    assert info["metadata"]["epoch"] == 2
    assert info["config"]["epochs"] == 2
    for name, value in scales.items():
        assert np.array_equal(info["feature_scales"][name], value)


def test_resume_matches_uninterrupted(tmp_path):
    sample = toy_sample(192, seed=6)
    validation = sample.take(np.arange(48))
    scales = feature_scales(sample.inputs)
    config = TrainConfig(epochs=2, batch_size=64, adversarial="fgsm", seed=9)

    torch.manual_seed(0)
    full = fit(DeepJet(), sample, validation, config=config, feature_scales=scales, out_dir=tmp_path / "full")
    torch.manual_seed(0)
    fit(DeepJet(), sample, validation, config=config.model_copy(update={"epochs": 1}), feature_scales=scales, out_dir=tmp_path / "cut")
    resumed = fit(
        DeepJet(), sample, validation, config=config, feature_scales=scales, out_dir=tmp_path / "cut",
        resume=tmp_path / "cut" / "epoch_001.pt",
    )

    uninterrupted, _ = load_checkpoint(tmp_path / "full" / "epoch_002.pt")
    continued, _ = load_checkpoint(tmp_path / "cut" / "epoch_002.pt")
    for (name, a), b in zip(uninterrupted.state_dict().items(), continued.state_dict().values()):
        assert torch.equal(a, b), name
    timing = {"epoch_time_s", "epoch_cpu_s"}
    assert {k: v for k, v in resumed[1].items() if k not in timing} == {k: v for k, v in full[1].items() if k not in timing}


def test_resume_rejects_changed_settings(tmp_path):
    sample = toy_sample(128, seed=7)
    scales = feature_scales(sample.inputs)
    config = TrainConfig(epochs=1, batch_size=64)
    fit(DeepJet(), sample, sample.take(np.arange(32)), config=config, feature_scales=scales, out_dir=tmp_path)
    with pytest.raises(ValueError, match="learning_rate"):
        fit(
            DeepJet(), sample, sample, config=config.model_copy(update={"epochs": 2, "learning_rate": 0.1}),
            feature_scales=scales, out_dir=tmp_path, resume=tmp_path / "epoch_001.pt",
        )


@pytest.fixture(scope="module")
def tiny_fileset(tmp_path_factory) -> Path:
    from advcalib.generate import generate

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "training_jets.yaml"
    return generate(recipe, tmp_path_factory.mktemp("jets"), events=150, seed=3)


def test_load_sample_from_fileset_uses_cache(tiny_fileset, tmp_path):
    from advcalib.training.dataset import load_sample, resolve_files

    files = resolve_files([tiny_fileset])
    assert {f.name for f in files} == {"qcd_train.root", "ttbar_train.root"}
    first = load_sample(files, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    second = load_sample(files, cache_dir=tmp_path)
    assert len(first) > 100
    assert np.array_equal(first.labels, second.labels)
    assert all(np.array_equal(a, b) for a, b in zip(first.inputs, second.inputs))
    assert np.all(first.pt > 20.0)
    assert set(np.unique(first.labels)) >= {B, C, UDS, G}


def test_resolve_files_errors(tmp_path):
    from advcalib.training.dataset import resolve_files

    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_files([tmp_path / "missing.root"])
    with pytest.raises(FileNotFoundError, match="no .root files"):
        resolve_files([tmp_path])
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"data_x": {"files": {"x.root": "Events"}, "metadata": {"is_data": True}}}))
    with pytest.raises(ValueError, match="no simulated datasets"):
        resolve_files([fileset])


def test_train_command(tiny_fileset, tmp_path):
    from advcalib.cli import main

    out = tmp_path / "run"
    code = main([
        "train", str(tiny_fileset), "--out", str(out), "--epochs", "1", "--batch-size", "64",
        "--adversarial", "fgsm", "--restrict-impact", "0.2", "--no-progress",
    ])
    assert code == 0
    _, info = load_checkpoint(out / "best.pt")
    assert info["config"]["adversarial"] == "fgsm"
    assert info["config"]["restrict_impact"] == 0.2
    assert info["feature_scales"] is not None
    assert (out / "input_cache").is_dir()


def stale_training(out: Path) -> None:
    """A training folder of an earlier run: two epochs, best.pt and a file of the user."""
    out.mkdir()
    for name in ("epoch_001.pt", "epoch_001.state.pt", "epoch_002.pt", "epoch_002.state.pt", "best.pt"):
        (out / name).write_bytes(b"earlier run")
    (out / "notes.txt").write_text("mine")


def test_train_rejects_folder_with_checkpoints(tmp_path, capsys):
    from advcalib.cli import main

    out = tmp_path / "run"
    stale_training(out)
    code = main(["train", str(tmp_path / "missing.root"), "--out", str(out), "--epochs", "1", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 1
    assert str(out) in error
    assert "--force" in error
    assert "--resume" in error
    assert (out / "best.pt").read_bytes() == b"earlier run"
    assert (out / "epoch_002.pt").read_bytes() == b"earlier run"


def test_train_force_replaces_checkpoints(tiny_fileset, tmp_path):
    from advcalib.cli import main

    out = tmp_path / "run"
    stale_training(out)
    code = main([
        "train", str(tiny_fileset), "--out", str(out), "--epochs", "1", "--batch-size", "64",
        "--max-jets", "200", "--no-cache", "--no-progress", "--force",
    ])
    assert code == 0
    assert not (out / "epoch_002.pt").exists()
    assert not (out / "epoch_002.state.pt").exists()
    _, info = load_checkpoint(out / "best.pt")
    assert info["metadata"]["epoch"] == 1
    _, info = load_checkpoint(out / "epoch_001.pt")
    assert info["metadata"]["epoch"] == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_train_force_and_resume_exclusive(tmp_path, capsys):
    from advcalib.cli import main

    out = tmp_path / "run"
    stale_training(out)
    code = main(["train", str(tmp_path / "x.root"), "--out", str(out), "--force", "--resume", str(out / "epoch_002.pt")])
    assert code == 2
    assert "exclude each other" in capsys.readouterr().err
    assert (out / "epoch_002.pt").read_bytes() == b"earlier run"


def test_deepcsv_training_runs(tmp_path):
    from advcalib.models import DeepCSV

    rng = np.random.default_rng(8)
    n = 256
    labels = rng.choice([B, BB, LEPB, C, UDS, G], size=n)
    x = rng.normal(size=(n, len(spec.DEEPCSV.features))).astype(np.float32)
    x[:, 2] = np.isin(labels, [B, BB, LEPB]) * 2.0 + rng.normal(0, 0.3, n)
    sample = JetSample(inputs=(x,), labels=labels, weights=np.ones(n, np.float32), pt=np.full(n, 40.0, np.float32), eta=np.zeros(n, np.float32))
    config = TrainConfig(architecture="DeepCSV", epochs=2, batch_size=64, adversarial="fgsm")
    history = fit(DeepCSV(), sample, sample.take(np.arange(64)), config=config, feature_scales=feature_scales(sample.inputs), out_dir=tmp_path)
    _, info = load_checkpoint(tmp_path / "best.pt")
    assert info["architecture"] == "DeepCSV"
    assert history[-1]["auc_clean_BvsL"] > 0.5
    assert info["feature_scales"]["deepcsv"].shape == (len(spec.DEEPCSV.features),)


def test_epsilon_scan_command(tiny_fileset, tmp_path):
    import csv

    from advcalib.cli import main

    out = tmp_path / "scan"
    code = main([
        "train", str(tiny_fileset), "--out", str(out), "--epochs", "1", "--batch-size", "64",
        "--max-jets", "200", "--epsilon-scan", "0.005,0.02", "--no-progress", "--no-cache",
    ])
    assert code == 0
    for epsilon in ("0.005", "0.02"):
        _, info = load_checkpoint(out / f"eps_{epsilon}" / "best.pt")
        assert info["config"]["epsilon"] == float(epsilon)
        assert info["config"]["adversarial"] == "fgsm"
    with (out / "epsilon_scan.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epsilon"] for row in rows] == ["0.005", "0.02"]
    assert "auc_fgsm_BvsL" in rows[0]
