"""``advcalib generate``: write synthetic PFNano simulation and pseudo-data with a fileset."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate synthetic PFNano simulation and pseudo-data",
        description="Simulate the datasets of a preset, write PFNano ROOT files, truth sidecars of the "
        "pseudo-data, mismodeling.json and fileset.json into --out.",
    )
    parser.add_argument("--preset", default="demo", help="built-in preset (demo, full) or a preset YAML file (default: demo)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives identical files (default: 1)")
    parser.add_argument("--events", type=int, default=None,
                        help="generated events of the largest dataset; the others and the data luminosity scale along")
    parser.add_argument("--deepjet-inputs", action="store_true", help="also store the Jet_DeepJet_* input branches")
    parser.add_argument("--closure", action="store_true", help="set every mismodeling knob to 0 (pseudo-data distributed as simulation)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advcalib.generate import generate

    if args.events is not None and args.events <= 0:
        print(f"error: --events must be positive, got {args.events}")
        return 2
    start = time.perf_counter()
    try:
        fileset = generate(args.preset, args.out, seed=args.seed, events=args.events,
                           deepjet_inputs=args.deepjet_inputs, closure=True if args.closure else None)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 2
    print(f"wrote {fileset} in {time.perf_counter() - start:.1f} s")
    return 0
