"""``advcalib condor prepare``: split a fileset into plain HTCondor batch jobs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("condor", help="prepare a plain HTCondor batch run (one `advcalib run` per job)")
    actions = parser.add_subparsers(dest="condor_action", metavar="ACTION", required=True)
    prepare = actions.add_parser(
        "prepare",
        help="write job filesets, submit file and wrapper",
        description="Split --fileset into --jobs job folders and write the submit file. Arguments after "
        "'--' are passed to `advcalib run` in every job, e.g. -- --stored-only --chunksize 50000.",
    )
    prepare.add_argument("--fileset", required=True, type=Path, help="fileset JSON of the whole run")
    prepare.add_argument("--jobs", required=True, type=int, help="number of jobs; every file goes to exactly one job")
    prepare.add_argument("--out", required=True, type=Path, help="folder for the jobs (job_000/, ...) and the submit file")
    prepare.add_argument("--lumi", type=float, default=None, help="luminosity in /pb for every job (default: from the data datasets)")
    prepare.add_argument("--cpus", type=int, default=1, help="request_cpus of each job")
    prepare.add_argument("--memory", default="4GB", help="request_memory of each job, e.g. 4GB")
    prepare.add_argument("--disk", default="4GB", help="request_disk of each job, e.g. 4GB")
    prepare.add_argument("--env-tarball", type=Path, default=None, help="venv-pack tarball of an environment with advcalib")
    prepare.add_argument("--image", default=None, help="container image with advcalib (e.g. a /cvmfs/unpacked.cern.ch path)")
    prepare.add_argument("--x509-proxy", type=Path, default=None, help="grid proxy sent with each job")
    prepare.add_argument("--directive", action="append", default=[], metavar="KEY=VALUE",
                         help="extra submit-file line, repeatable, e.g. +JobFlavour=\"workday\"")
    prepare.add_argument("--templates", type=Path, default=None, help="folder with advcalib.sub.in and advcalib_job.sh")
    prepare.add_argument("run_args", nargs=argparse.REMAINDER, help="-- followed by `advcalib run` arguments")
    prepare.set_defaults(func=prepare_command)


def prepare_command(args: argparse.Namespace) -> int:
    from advcalib.fileset import FilesetError
    from advcalib.scaleout.condor import CondorJobOptions, prepare_jobs

    run_args = list(args.run_args)
    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    try:
        directives = dict(_split_directive(item) for item in args.directive)
        options = CondorJobOptions(cpus=args.cpus, memory=args.memory, disk=args.disk, env_tarball=args.env_tarball,
                                   image=args.image, x509_proxy=args.x509_proxy, directives=directives)
        prepared = prepare_jobs(args.fileset, jobs=args.jobs, out_dir=args.out, run_args=run_args, lumi=args.lumi,
                                options=options, templates=args.templates)
    except (ValueError, FileNotFoundError, FileExistsError, FilesetError) as error:
        print(f"advcalib condor prepare: error: {error}")
        return 1
    print(f"prepared {len(prepared.job_dirs)} jobs in {prepared.out_dir}")
    print(f"submit:  condor_submit {prepared.submit_file}")
    print(f"merge:   advcalib merge {prepared.out_dir}/job_*/hists.coffea --out {prepared.out_dir}")
    return 0


def _split_directive(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--directive {item!r} must be KEY=VALUE")
    return key.strip(), value.strip()
