"""``advcalib run`` and ``advcalib demo``: a calibration run on a fileset, or on a generated sample."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from advcalib.cli import describe_error
from advcalib.processor import DEFAULT_MODELS, STORED_MODEL
from advcalib.scaleout.arguments import add_scaleout_arguments, options_from_args

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    run_parser = subparsers.add_parser("run", help="select events, run the taggers and write histograms, JSD, SFs, plots")
    run_parser.add_argument("--fileset", required=True, type=Path, help="fileset JSON with is_data, xsec, lumi metadata")
    _add_common(run_parser)
    run_parser.add_argument("--limit-files", type=int, default=None, metavar="N", help="process at most N files per dataset")
    run_parser.add_argument("--lumi", type=float, default=None, help="luminosity in /pb (default: from the data datasets)")
    run_parser.add_argument("--resume", action="store_true",
                            help="continue an interrupted run in --out, reusing its finished chunks (same options needed)")
    run_parser.set_defaults(func=run_command)

    demo_parser = subparsers.add_parser("demo", help="generate the demo sample and calibrate the packaged models on it")
    _add_common(demo_parser)
    demo_parser.add_argument("--events", type=int, default=None, help="events of the largest demo dataset (default: the preset's)")
    demo_parser.add_argument("--seed", type=int, default=1, help="random seed of the generator")
    demo_parser.set_defaults(func=demo_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty unless --force)")
    parser.add_argument(
        "--model", action="append", default=None, metavar="NAME=SOURCE",
        help="tagger to evaluate, repeatable: a packaged name (nominal, adversarial) or a .pt/.ts/.onnx file; "
        f"default: {', '.join(DEFAULT_MODELS)}. Model '{STORED_MODEL}' (the file's own discriminators) is always filled",
    )
    parser.add_argument("--stored-only", action="store_true", help=f"fill only model '{STORED_MODEL}'; no tagger is run")
    parser.add_argument("--device", default=None, help="torch device of the taggers (default: CUDA when available)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty output folder after removing the files that its manifest.json lists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_scaleout_arguments(parser)


def parse_models(specs: list[str] | None, *, stored_only: bool) -> dict[str, str]:
    """Model name -> source from ``NAME=SOURCE`` options (a bare SOURCE is its own name)."""
    if stored_only:
        if specs:
            raise ValueError("--stored-only and --model exclude each other; pass one of them")
        return {}
    if not specs:
        return dict(DEFAULT_MODELS)
    models: dict[str, str] = {}
    for spec in specs:
        name, _, source = spec.partition("=")
        if not source:
            source, name = name, Path(name).stem
        if not name or name in models:
            raise ValueError(f"--model {spec!r}: model names must be non-empty and unique")
        if name == STORED_MODEL:
            raise ValueError(f"--model {spec!r}: the name {STORED_MODEL!r} is reserved for the file's own discriminators")
        models[name] = source
    return models


def _config(args: argparse.Namespace, fileset: Path, *, lumi: float | None = None, limit_files: int | None = None):
    from advcalib.run import RunConfig

    return RunConfig(
        fileset=fileset, out=args.out, models=parse_models(args.model, stored_only=args.stored_only),
        scaleout=options_from_args(args).model_copy(update={"status": not args.no_progress}),
        limit_files=limit_files, lumi=lumi, force=args.force, device=args.device, resume=getattr(args, "resume", False),
    )


def run_command(args: argparse.Namespace) -> int:
    from advcalib.run import run_calibration

    try:
        config = _config(args, args.fileset, lumi=args.lumi, limit_files=args.limit_files)
        summary = run_calibration(config)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        print(f"advcalib run: error: {describe_error(error)}", file=sys.stderr)
        return 1
    _report(summary)
    return 1 if summary.failed_steps else 0


def demo_command(args: argparse.Namespace) -> int:
    from advcalib.generate import generate
    from advcalib.processor import cached_tagger
    from advcalib.run import check_output, run_calibration

    start = time.perf_counter()
    try:
        for source in parse_models(args.model, stored_only=args.stored_only).values():
            cached_tagger(source, args.device)  # a missing model fails before the sample is generated
        check_output(args.out, force=args.force)  # the run clears the folder after the sample is generated
        print(f"generating the demo sample in {args.out / 'sample'} ...")
        fileset = generate("demo", args.out / "sample", seed=args.seed, events=args.events)
        config = _config(args, Path(fileset)).model_copy(update={"force": True})
        summary = run_calibration(config)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        print(f"advcalib demo: error: {describe_error(error)}", file=sys.stderr)
        return 1
    _report(summary)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 1 if summary.failed_steps else 0


def _report(summary) -> None:
    if summary.jsd is not None:
        from advcalib.divergence import format_markdown

        print("Jensen-Shannon divergence between data and MC (OS-SS):")
        print(format_markdown(summary.jsd))
    for item in summary.result.get("skipped_models", []):
        print(f"note: file {item['file']} of dataset {item['dataset']} has no DeepJet inputs, so only model "
              f"'{STORED_MODEL}' was filled for it. The missing branches are listed under 'skipped_models' in hists.coffea.")
    for path, reasons in summary.result.get("failed_files", {}).items():
        print(f"skipped file {path}: {reasons}")
    for step, reason in summary.failed_steps.items():
        print(f"step {step} failed: {reason} (see the log above; redo it from hists.coffea)")
    _print_outputs(summary)


def _print_outputs(summary) -> None:
    from advcalib.manifest import MANIFEST_NAME

    folders: dict[str, int] = {}
    print(f"outputs of this run in {summary.out} (listed in {MANIFEST_NAME}):")
    for path in summary.files:
        parts = path.relative_to(summary.out).parts
        if len(parts) == 1:
            print(f"  {parts[0]}")
        else:
            folders[parts[0]] = folders.get(parts[0], 0) + 1
    for name, count in sorted(folders.items()):
        print(f"  {name}/ ({count} files)")
