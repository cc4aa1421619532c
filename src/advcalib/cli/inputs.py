"""``advcalib inputs check``: run a DeepJet network on inputs built from a file, compare with stored outputs."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inputs", help="build and check DeepJet inputs")
    commands = parser.add_subparsers(dest="inputs_command", metavar="ACTION", required=True)
    check = commands.add_parser(
        "check",
        help="compare a DeepJet network on the built inputs with the file's stored discriminators",
        description=(
            "Build DeepJet inputs from a PFNano file, run the network, and compare BvsAll, CvsL "
            "and CvsB with Jet_btagDeepFlavB, Jet_btagDeepFlavCvL and Jet_btagDeepFlavCvB."
        ),
    )
    check.add_argument("file", type=Path, metavar="FILE.root", help="PFNano ROOT file with an Events tree")
    check.add_argument("--model", required=True, type=Path, help="DeepJet network (.onnx, .pt or TorchScript)")
    check.add_argument("--json", type=Path, metavar="OUT.json", help="also write the numbers to this JSON file")
    check.add_argument(
        "--source",
        default="auto",
        choices=("auto", "deepjet_branches", "pfcands"),
        help="where inputs come from (default: stored Jet_DeepJet_* branches when present)",
    )
    check.set_defaults(func=run_check)


def _read_events(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    # The schema warns about cross-references of collections this check does not use.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="coffea.nanoevents")
        factory = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager")
        return factory.events()


def run_check(args: argparse.Namespace) -> int:
    from advcalib.inputs.validation import compare_with_stored

    for path, role in ((args.file, "input file"), (args.model, "model")):
        if not path.exists():
            print(f"error: {role} {path} not found")
            return 2
    try:
        result = compare_with_stored(_read_events(args.file), args.model, source=args.source)
    except KeyError as err:
        print(f"error: {args.file}: {err.args[0]}")
        return 2
    print(f"{'discriminator':<14}{'n jets':>8}{'pearson r':>12}{'median |diff|':>16}{'p95 |diff|':>13}")
    for name, numbers in result.items():
        print(
            f"{name:<14}{numbers['n_jets']:>8d}{numbers['pearson_r']:>12.5f}"
            f"{numbers['median_abs_diff']:>16.5f}{numbers['p95_abs_diff']:>13.5f}"
        )
    if args.json:
        clean = {k: {m: (None if isinstance(v, float) and math.isnan(v) else v) for m, v in d.items()} for k, d in result.items()}
        args.json.write_text(json.dumps(clean, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
