"""Command-line interface: ``advcalib SUBCOMMAND ...``.

Each subcommand lives in its own module of this package. The module defines
``register(subparsers)``, which adds its parser and sets ``func`` to a callable that takes
the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

import pydantic

#: Modules of this package that define subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "generate",
    "inputs",
    "run",
    "train",
    "evaluate",
    "outputs",
    "scalefactors",
    "condor",
    "merge",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="advcalib",
        description="Calibrate nominal and adversarial DeepJet taggers on PFNano events.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Send advcalib's log records to stderr; the library itself only creates loggers.

    coffea's schema warns once per file about cross-references to collections that the
    file does not store (FatJet, Photon, ...). advcalib reads none of them, so these
    warnings are hidden below -vv.
    """
    if verbosity < 2:
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea\.nanoevents\.schemas")
    # Other libraries log warnings by default; advcalib's own progress is shown at INFO.
    if verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("advcalib").setLevel(min(level, logging.INFO))


#: Errors that come from the user's input (files, options, models); shown without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, OSError, RuntimeError, EOFError, pydantic.ValidationError,
)


def describe_error(error: BaseException) -> str:
    """Format a user error as one line; for pydantic errors, list each invalid field."""
    if isinstance(error, pydantic.ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}" for item in error.errors()
        )
        return f"invalid settings in {error.title}: {fields}"
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``advcalib`` console script.

    Errors caused by the input are printed as one line (``-vv`` shows the traceback) and
    give exit status 1; an interruption gives 130, the shell's code for SIGINT.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"advcalib {args.command}: interrupted; outputs written so far are complete files "
              "(advcalib run continues from its finished chunks with --resume)", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if args.verbose >= 2:
            raise
        print(f"advcalib {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
