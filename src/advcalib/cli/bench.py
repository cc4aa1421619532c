"""``advcalib bench``: measure inference, input building, processor, training and scale-out rates."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _default_cms_models() -> Path | None:
    shared = os.environ.get("ADVCALIB_SHARED")
    return Path(shared) / "models" if shared else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark options to ``parser`` (shared with ``python -m benchmarks``)."""
    from advcalib.bench import SECTIONS

    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="folder for bench.json, bench.md and samples (default: bench-out)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes that check that every benchmark runs; its rates mean nothing")
    parser.add_argument("--device", default="cpu", help="torch device of the matmul, inference and processor measurements: cpu, cuda, cuda:N (default: cpu)")
    parser.add_argument("--cms-models", type=Path, default=_default_cms_models(),
                        help="folder with DeepJet_Run3_122X.onnx and DeepFlavourV03_10X.onnx (default: $ADVCALIB_SHARED/models)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--threads", type=int, default=None, help="thread count of the 'all threads' measurements (default: all cores)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure inference, input building, processor, training and scale-out rates",
        description="Run the performance benchmarks and write OUT/bench.json and OUT/bench.md. "
        "A full run takes a few minutes on two cores; --quick runs tiny sizes.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from advcalib.bench import BenchConfig, run_benchmarks

    options: dict[str, object] = {"device": args.device, "cms_models": args.cms_models, "threads": args.threads}
    if args.only:
        options["sections"] = tuple(args.only)
    try:
        config = BenchConfig.quick(args.out, **options) if args.quick else BenchConfig(out=args.out, **options)
        report = run_benchmarks(config)
    except (ValidationError, ValueError) as error:
        print(f"error: {error}")
        return 2
    print((args.out / "bench.md").read_text())
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    failed = [name for name, section in report["sections"].items() if "error" in section]
    if failed:
        print(f"sections that failed: {', '.join(failed)}")
        return 1
    return 0
