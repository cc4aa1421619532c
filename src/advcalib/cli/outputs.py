"""``advcalib jsd | efficiency | plot``: redo one output step from a saved ``hists.coffea``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from advcalib.histograms import DISCRIMINATORS, SELECTIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    jsd = _add_parser(subparsers, "jsd", "write the data/MC JSD table (jsd.csv, jsd.json, jsd.md)")
    _add_toy_options(jsd)
    jsd.set_defaults(func=run_jsd)

    efficiency = _add_parser(subparsers, "efficiency", "write data and MC tagging efficiencies at working points (efficiency.csv)")
    efficiency.set_defaults(func=run_efficiency)

    plot = _add_parser(subparsers, "plot", "draw the data/MC discriminator plots into OUT/plots")
    plot.add_argument("--jsd", type=Path, metavar="FILE", help="jsd.json to show in the legends (default: compute it)")
    _add_toy_options(plot)
    plot.add_argument("--selection", action="append", choices=SELECTIONS, help="plot only this selection (repeatable)")
    plot.add_argument("--discriminator", action="append", choices=DISCRIMINATORS, help="plot only this discriminator (repeatable)")
    plot.add_argument("--model", action="append", help="plot only this model (repeatable)")
    plot.add_argument("--format", action="append", dest="formats", choices=("png", "pdf", "svg"),
                      help="file format (repeatable, default png and pdf)")
    plot.set_defaults(func=run_plot)


def _add_parser(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("hists", type=Path, metavar="HISTS", help="hists.coffea written by 'advcalib run'")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    return parser


def _add_toy_options(parser: argparse.ArgumentParser) -> None:
    from advcalib.divergence import DEFAULT_TOYS

    parser.add_argument("--toys", type=int, default=DEFAULT_TOYS, help=f"bootstrap toys per JSD value (default {DEFAULT_TOYS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap toys (default 0)")
    parser.add_argument("--method", choices=("gaussian", "poisson"), default="gaussian",
                        help="resampling of the bins in the toys (default gaussian)")


def _load(args: argparse.Namespace, outputs: list[Path]) -> dict[str, Any] | None:
    """Load the run output, or print the reason and return None.

    Without --force, outputs that already exist also make it return None.
    """
    from advcalib.outputs import load_result

    existing = [path for path in outputs if path.exists() and (path.is_file() or any(path.iterdir()))]
    if existing and not args.force:
        names = ", ".join(str(path) for path in existing)
        print(f"error: {names} already exists. Pass --force to overwrite it or choose another --out.", file=sys.stderr)
        return None
    try:
        return load_result(args.hists)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def run_jsd(args: argparse.Namespace) -> int:
    from advcalib.divergence import format_markdown, jsd_table, write_jsd_table

    result = _load(args, [args.out / name for name in ("jsd.csv", "jsd.json", "jsd.md")])
    if result is None:
        return 1
    table = jsd_table(result, toys=args.toys, seed=args.seed, method=args.method)
    for path in write_jsd_table(table, args.out):
        print(f"wrote {path}")
    print(format_markdown(table), end="")
    return 0


def run_efficiency(args: argparse.Namespace) -> int:
    from advcalib.efficiency import efficiency_table, write_efficiency

    result = _load(args, [args.out / "efficiency.csv"])
    if result is None:
        return 1
    path = write_efficiency(efficiency_table(result), args.out)
    print(f"wrote {path}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from advcalib.divergence import jsd_table, read_jsd_json
    from advcalib.plotting import plot_all

    result = _load(args, [args.out / "plots"])
    if result is None:
        return 1
    if args.jsd is not None:
        try:
            table = read_jsd_json(args.jsd)
        except (OSError, ValueError) as error:
            print(f"error: cannot read --jsd {args.jsd}: {error}", file=sys.stderr)
            return 1
    else:
        table = jsd_table(result, toys=args.toys, seed=args.seed, method=args.method)
    paths = plot_all(
        result, args.out, table,
        selections=args.selection or SELECTIONS,
        discriminators=args.discriminator or DISCRIMINATORS,
        models=args.model,
        formats=args.formats or ("png", "pdf"),
    )
    print(f"wrote {len(paths)} files to {args.out / 'plots'}")
    return 0
