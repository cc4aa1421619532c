"""``advcalib merge``: add the outputs of batch jobs and redo JSD, scale factors and plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("merge", help="merge job outputs (hists.coffea) and redo the downstream steps")
    parser.add_argument("inputs", nargs="+", type=Path, help="job outputs, e.g. DIR/job_*/hists.coffea")
    parser.add_argument("--out", required=True, type=Path, help="folder for the merged hists.coffea and the derived outputs")
    parser.add_argument("--allow-missing", action="store_true",
                        help="merge even when jobs listed in OUT/prepare.json have no output")
    parser.add_argument("--no-finish", action="store_true", help="write only the merged hists.coffea")
    parser.set_defaults(func=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    from advcalib.scaleout import merge

    try:
        missing = merge.missing_jobs(args.out, args.inputs)
        if missing and not args.allow_missing:
            raise merge.MergeError(
                f"{len(missing)} prepared jobs have no hists.coffea: {', '.join(missing)}; "
                "resubmit them or pass --allow-missing"
            )
        outputs = merge.load_outputs(args.inputs)
        result = merge.merge_outputs(outputs, names=[str(path) for path in args.inputs])
        if args.no_finish:
            merge.save_merged(result, args.out)
        else:
            merge.finish(result, args.out)
    except (ValueError, FileNotFoundError) as error:
        print(f"advcalib merge: error: {error}")
        return 1
    if missing:
        print(f"warning: merged without the jobs {', '.join(missing)}")
    failed = result.get("failed_files") or {}
    for filename, reasons in failed.items():
        print(f"failed file {filename}: {reasons[0]}")
    events = sum(info.get("n_events", 0) for info in result["datasets"].values())
    print(f"merged {len(outputs)} outputs ({events} events) into {args.out / 'hists.coffea'}")
    return 0
