"""``advcalib train``: train DeepJet or DeepCSV, clean or adversarially, on PFNano jets."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list of numbers {text!r}; expected e.g. 0.005,0.01,0.02") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DeepJet or DeepCSV tagger (clean or adversarial)",
        description=(
            "Train a tagger on simulated PFNano jets with DeepJet truth classes, each class "
            "reweighted to the b-jet (pt, eta) spectrum. Without INPUT, synthetic training "
            "datasets are generated first (--preset, default 'full', scaled by --events)."
        ),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="ROOT files, folders or fileset.json (datasets with role 'training')")
    parser.add_argument("--out", type=Path, required=True, help="output folder for checkpoints, history and plots")

    parser.add_argument("--architecture", choices=("DeepJet", "DeepCSV"), default="DeepJet", help="network to train")
    parser.add_argument("--epochs", type=int, default=5, help="number of epochs (default 5)")
    parser.add_argument("--batch-size", type=int, default=1024, help="jets per optimiser step (default 1024)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="initial Adam learning rate (default 1e-3)")
    parser.add_argument("--lr-decay", type=float, default=0.9, help="learning-rate factor per epoch (default 0.9)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="fraction of jets for validation (default 0.2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split, initialisation, shuffling and dropout")

    parser.add_argument("--adversarial", choices=("fgsm", "ngm"), help="replace training batches by FGSM or NGM jets")
    parser.add_argument("--epsilon", type=float, default=0.01, help="attack size in units of the feature scale (default 0.01)")
    parser.add_argument("--epsilon-per-flavour", metavar="b=E,c=E,l=E", help="epsilon per flavour group, overrides --epsilon")
    parser.add_argument("--epsilon-scan", type=_floats, metavar="E1,E2,...", help="train one adversarial model per epsilon")
    parser.add_argument("--adv-fraction", type=float, default=1.0, help="fraction of each batch attacked (default 1)")
    parser.add_argument("--start-after", type=int, default=0, help="clean epochs before adversarial training starts")
    parser.add_argument("--restrict-impact", type=float, help="cap each shift at this fraction of |x| (e.g. 0.2)")
    parser.add_argument("--track-epsilon", type=float, default=0.01, help="FGSM epsilon of the per-epoch robustness check")

    parser.add_argument("--resume", type=Path, help="epoch_NNN.pt of an interrupted run with the same settings; continues in OUT")
    parser.add_argument("--force", action="store_true",
                        help="remove the checkpoints and history of an earlier run in OUT, then train from scratch")

    parser.add_argument("--preset", default="full", help="generator preset of the synthetic sample (no INPUT; default full)")
    parser.add_argument("--events", type=int, default=100_000, help="generated events of the largest synthetic dataset (no INPUT)")
    parser.add_argument("--generator-seed", type=int, default=1, help="seed of the synthetic sample (no INPUT)")

    parser.add_argument("--max-jets", type=int, help="use at most this many jets")
    parser.add_argument("--cache", type=Path, help="folder for cached inputs (default OUT/input_cache)")
    parser.add_argument("--no-cache", action="store_true", help="build inputs without reading or writing a cache")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _training_files(args: argparse.Namespace) -> list[Path]:
    from advcalib.training.dataset import resolve_files

    if args.inputs:
        return resolve_files(args.inputs, role="training")
    from advcalib.generate import generate

    target = args.out / "synthetic"
    fileset = target / "fileset.json"
    if fileset.exists():
        logger.info("reusing synthetic jets in %s", target)
    else:
        print(f"generating synthetic training jets (preset {args.preset}, {args.events} events) in {target}")
        fileset = generate(args.preset, target, seed=args.generator_seed, events=args.events)
    return resolve_files([fileset], role="training")


def _config(args: argparse.Namespace, *, epsilon: float | None = None, adversarial: str | None = None):  # noqa: ANN202
    from advcalib.training import TrainConfig, parse_epsilon_per_flavour

    per_flavour = parse_epsilon_per_flavour(args.epsilon_per_flavour) if args.epsilon_per_flavour else None
    return TrainConfig(
        architecture=args.architecture,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_decay=args.lr_decay,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        adversarial=adversarial or args.adversarial,
        epsilon=args.epsilon if epsilon is None else epsilon,
        epsilon_per_flavour=per_flavour,
        adv_fraction=args.adv_fraction,
        start_after=args.start_after,
        restrict_impact=args.restrict_impact,
        track_epsilon=args.track_epsilon,
    )


def _progress(disabled: bool):  # noqa: ANN202
    from tqdm import tqdm

    if disabled:
        return None
    return lambda total, epoch: tqdm(total=total, desc=f"epoch {epoch}", unit="batch", leave=False)


def _train_one(args: argparse.Namespace, config, train, validation, scales, out_dir: Path, metadata: dict) -> list[dict]:  # noqa: ANN001
    from advcalib.models import DeepCSV, DeepJet
    from advcalib.training import fit

    torch.manual_seed(config.seed)
    model = DeepJet() if config.architecture == "DeepJet" else DeepCSV()
    history = fit(
        model,
        train,
        validation,
        config=config,
        feature_scales=scales,
        out_dir=out_dir,
        metadata=metadata,
        resume=args.resume,
        progress=_progress(args.no_progress),
    )
    last = history[-1]
    print(
        f"{out_dir}: {len(history)} epochs, mean epoch time {np.mean([r['epoch_time_s'] for r in history]):.1f} s; "
        f"last epoch BvsL AUC clean {last['auc_clean_BvsL']:.4f}, FGSM {last['auc_fgsm_BvsL']:.4f}"
    )
    return history


def _write_scan(out_dir: Path, results: dict[float, list[dict]]) -> Path:
    path = out_dir / "epsilon_scan.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        columns = [k for k in next(iter(results.values()))[-1] if k.startswith("auc_")]
        writer.writerow(["epsilon", *columns])
        for epsilon, history in results.items():
            writer.writerow([f"{epsilon:g}", *(f"{history[-1][c]:.6f}" for c in columns)])
    return path


def run(args: argparse.Namespace) -> int:
    from advcalib.attacks import feature_scales
    from advcalib.training import split_sample
    from advcalib.training.checkpoints import prepare_training_folder
    from advcalib.training.dataset import load_sample

    if args.force and args.resume is not None:
        print("advcalib train: error: --force and --resume exclude each other; --resume continues the run in OUT", file=sys.stderr)
        return 2
    try:
        removed = prepare_training_folder(args.out, force=args.force, resume=args.resume)
    except FileExistsError as error:
        print(f"advcalib train: error: {error}", file=sys.stderr)
        return 1
    if removed:
        print(f"removed {len(removed)} checkpoint and history files of the earlier run in {args.out}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config(args)
    files = _training_files(args)
    cache = None if args.no_cache else (args.cache or args.out / "input_cache")
    sample = load_sample(files, architecture=args.architecture, cache_dir=cache, max_jets=args.max_jets)
    train, validation = split_sample(sample, validation_fraction=config.validation_fraction, seed=config.seed)
    print(f"{len(train)} training and {len(validation)} validation jets from {len(files)} files")
    scales = feature_scales(train.inputs)
    metadata = {"n_train": len(train), "n_validation": len(validation), "files": [str(f) for f in files]}
    if not args.epsilon_scan:
        _train_one(args, config, train, validation, scales, args.out, metadata)
        return 0
    if args.resume is not None:
        print("error: --resume cannot be combined with --epsilon-scan; resume each scan point on its own")
        return 2
    results = {}
    for epsilon in args.epsilon_scan:
        scan_config = _config(args, epsilon=epsilon, adversarial=args.adversarial or "fgsm")
        results[epsilon] = _train_one(args, scan_config, train, validation, scales, args.out / f"eps_{epsilon:g}", metadata)
    print(f"epsilon scan written to {_write_scan(args.out, results)}")
    return 0
