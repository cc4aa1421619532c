"""``python -m benchmarks``: the same run as ``advcalib bench``, with the same options."""

from __future__ import annotations

import argparse
import logging
import sys

from advcalib.cli import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run the advcalib performance benchmarks.")
    bench.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
