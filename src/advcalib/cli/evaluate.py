"""``advcalib evaluate``: AUCs of taggers under adversarial attacks, noise and input shifts."""

from __future__ import annotations

import argparse
from pathlib import Path


def _model_spec(text: str) -> tuple[str, str]:
    name, sep, source = text.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"invalid model {text!r}; expected NAME=PATH, e.g. mine=out/best.pt")
    return name, source


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure tagger robustness (ROC/AUC under FGSM, NGM, PGD, noise, shifts, transfer)",
        description=(
            "Compute BvsL, CvsB, CvsL and BvsC ROC curves and AUCs of each model on clean and "
            "perturbed jets; writes robustness.json, robustness.csv and plots to --out."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="simulated PFNano ROOT files, folders or fileset.json")
    parser.add_argument(
        "--model",
        action="append",
        type=_model_spec,
        metavar="NAME=PATH",
        help="model to evaluate: checkpoint, TorchScript or ONNX file, or nominal/adversarial (repeatable; default: the packaged nominal and adversarial)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--role", default="training", help="dataset role to read from a fileset ('any' for all simulated datasets)")
    parser.add_argument("--epsilon", type=float, default=0.01, help="attack and shift size in units of the feature scale (default 0.01)")
    parser.add_argument("--pgd-steps", type=int, default=5, help="PGD steps (default 5)")
    parser.add_argument("--pgd-step-size", type=float, help="PGD step in units of the feature scale (default 2.5 eps / steps)")
    parser.add_argument("--noise-sigma", type=float, default=0.05, help="Gaussian noise width in units of the feature scale (default 0.05)")
    parser.add_argument("--cap", type=float, default=0.2, help="impact cap of the capped variants, fraction of |x| (default 0.2)")
    parser.add_argument("--max-jets", type=int, help="use at most this many jets")
    parser.add_argument("--cache", type=Path, help="folder for cached inputs (default: no cache)")
    parser.add_argument("--no-plots", action="store_true", help="write only the tables")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advcalib.evaluate import EvaluateConfig, evaluate_taggers, write_tables
    from advcalib.evaluate_plots import plot_features, plot_rocs
    from advcalib.models import load_tagger
    from advcalib.training.dataset import load_sample, resolve_files

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    models = dict(args.model or [("nominal", "nominal"), ("adversarial", "adversarial")])
    taggers = {name: load_tagger(source, device="cpu") for name, source in models.items()}
    architectures = {t.architecture for t in taggers.values()}
    if len(architectures) > 1:
        print(f"error: models of different architectures {sorted(architectures)}; evaluate them in separate runs")
        return 2
    files = resolve_files(args.inputs, role=None if args.role == "any" else args.role)
    sample = load_sample(files, architecture=architectures.pop(), cache_dir=args.cache, max_jets=args.max_jets, weighted=False)
    config = EvaluateConfig(
        epsilon=args.epsilon,
        pgd_steps=args.pgd_steps,
        pgd_step_size=args.pgd_step_size,
        noise_sigma=args.noise_sigma,
        cap=args.cap,
    )
    print(f"evaluating {', '.join(taggers)} on {len(sample)} jets from {len(files)} files")
    result = evaluate_taggers(taggers, sample, config=config)
    csv_path, json_path = write_tables(result, args.out, config=config, models=models, n_jets=len(sample))
    if not args.no_plots:
        plot_rocs(result, sample.labels, args.out)
        plot_features(result, args.out)
    for note in result.notes:
        print(f"note: {note}")
    for model, perturbations in result.aucs.items():
        clean = perturbations["clean"]["BvsL"]
        print(f"{model}: BvsL AUC clean {clean:.4f}")
    print(f"wrote {csv_path} and {json_path}")
    return 0
