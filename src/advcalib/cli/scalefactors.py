"""``advcalib scalefactors HISTS.coffea --out DIR``: derive SFs and payloads from a saved run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from advcalib.scalefactors import FitConfig, ScaleFactorConfig, derive_scale_factors
from advcalib.scalefactors.derive import SHAPE_FITS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scalefactors",
        help="fit c-tag and b-tag scale factors and write correctionlib payloads",
        description="Fit per-flavour shape and working-point SFs of every model in a run's hists.coffea "
        "and write sf_<model>.json.gz, diagnostics.json, closure.json (pseudo-data with truth only) and plots.",
    )
    parser.add_argument("hists", type=Path, help="hists.coffea written by 'advcalib run'")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    parser.add_argument("--toys", type=int, default=100, help="pseudo-experiments for the statistical uncertainty (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the pseudo-experiments (default 1)")
    parser.add_argument("--nominal", default="nominal", help="entry of the histograms' systematic axis to fit (default nominal)")
    parser.add_argument(
        "--max-relative-uncertainty", type=float, default=0.2,
        help="merge bins until the expected relative statistical uncertainty of each SF is below this (default 0.2)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.hists.is_file():
        print(f"error: {args.hists} not found; pass the hists.coffea written by 'advcalib run'")
        return 1
    from coffea.util import load

    try:
        result = load(str(args.hists))
    except Exception as error:  # coffea.util.load raises whatever the unpickler or decompressor raises
        print(f"error: cannot read {args.hists} as a coffea output file: {error}")
        return 1
    if not isinstance(result, dict) or "hists" not in result:
        print(f"error: {args.hists} has no 'hists' entry; it is not the output of 'advcalib run'")
        return 1
    try:
        config = ScaleFactorConfig(
            n_toys=args.toys, seed=args.seed, nominal_systematic=args.nominal, plots=not args.no_plots,
            fit=FitConfig(max_relative_uncertainty=args.max_relative_uncertainty),
        )
    except ValidationError as error:
        print(f"error: invalid option: {error}")
        return 2
    try:
        summary = derive_scale_factors(result, args.out, config=config)
    except ValueError as error:
        print(f"error: {args.hists}: {error}")
        return 1
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    for model, entry in summary["models"].items():
        print(f"{model}: {entry['payload']}")
        for fit in SHAPE_FITS:
            record = entry[fit]
            print(f"  {fit}: {record['n_iterations']} iterations, chi2 {record['chi2_first']:.1f} -> {record['chi2_final']:.1f}")
            if "closure" in entry:
                closure = entry["closure"][fit]
                print(f"    closure pulls: {json.dumps(closure['pull_diff'])}")
    print(f"files written to {Path(summary['files'][-1]).parent}")
