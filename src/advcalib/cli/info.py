"""``advcalib info``: print the DeepJet input specification."""

from __future__ import annotations

import argparse

from advcalib import spec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="print the DeepJet input specification")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for group in spec.DEEPJET_GROUPS:
        print(f"{group.name} ({group.onnx_name}): {group.slots} x {len(group.features)}  {group.sort_order}")
        for feature in group.features:
            bounds = "" if feature.low is None else f"[{feature.low:g}, {feature.high:g}]"
            kind = "int" if feature.integer else "float"
            print(f"  {feature.name:<36} {kind:<5} {bounds:<18} {feature.description}")
    print(f"total DeepJet inputs: {spec.DEEPJET_N_INPUTS}")
    return 0
