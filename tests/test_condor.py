"""Plain HTCondor batch: job preparation, the job wrapper run locally, and merging.

No HTCondor pool exists in the test environment, so the submit file is checked by
parsing it, and the job wrapper runs under bash as a job would on a worker node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from coffea.util import load, save
from hypothesis import given, settings
from hypothesis import strategies as st

from advcalib.cli import main
from advcalib.scaleout import ExecutorOptions, run_processor
from advcalib.scaleout.condor import prepare_jobs, split_files
from advcalib.scaleout.merge import MergeError, load_outputs, merge_outputs

warnings.filterwarnings("ignore", category=RuntimeWarning, module="coffea")

REPO = Path(__file__).resolve().parents[1]
LUMI = 10.0
_SESSION: dict[str, object] = {}


# --- splitting ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data())
def test_split_lists_every_file_once(sizes, data):
    fileset = {
        f"ds{d}": {"files": {f"ds{d}_{i}.root": "Events" for i in range(n)}, "metadata": {"is_data": d == 0, "index": d}}
        for d, n in enumerate(sizes)
    }
    total = sum(sizes)
    jobs = data.draw(st.integers(1, total))
    parts = split_files(fileset, jobs)
    assert len(parts) == jobs
    listed = [(dataset, path) for part in parts for dataset, spec in part.items() for path in spec["files"]]
    assert sorted(listed) == sorted((d, p) for d, spec in fileset.items() for p in spec["files"])
    assert len(set(listed)) == total
    per_job = [sum(len(spec["files"]) for spec in part.values()) for part in parts]
    assert max(per_job) - min(per_job) <= 1
    for part in parts:
        for dataset, spec in part.items():
            assert spec["metadata"] == fileset[dataset]["metadata"]


def test_split_keeps_own_truth_sidecars():
    fileset = {"data": {"files": {"a.root": "Events", "b.root": "Events"},
                        "metadata": {"is_data": True, "truth": {"a.root": "a_truth.root", "b.root": "b_truth.root"}}}}
    first, second = split_files(fileset, 2)
    assert first["data"]["metadata"]["truth"] == {"a.root": "a_truth.root"}
    assert second["data"]["metadata"]["truth"] == {"b.root": "b_truth.root"}


def test_split_more_jobs_than_files_rejected():
    with pytest.raises(ValueError, match="--jobs 3 is more than the 2 input files"):
        split_files({"d": {"files": {"a.root": "Events", "b.root": "Events"}}}, 3)


# --- prepare ------------------------------------------------------------------------------


@pytest.fixture
def two_file_fileset(real_nano_dy, tmp_path_factory) -> Path:
    """Fileset of one simulated dataset in two files (nano_dy.root and a copy), no sumw."""
    if "fileset" not in _SESSION:
        folder = tmp_path_factory.mktemp("inputs")
        copy = folder / "nano_dy_copy.root"
        shutil.copyfile(real_nano_dy, copy)  # a link would resolve to the same path
        path = folder / "fileset.json"
        path.write_text(
            '{"dy": {"files": {"%s": "Events", "nano_dy_copy.root": "Events"},'
            ' "metadata": {"is_data": false, "xsec": 6077.2, "process": "DY"}}}' % real_nano_dy
        )
        _SESSION["fileset"] = path
    return _SESSION["fileset"]


@pytest.fixture
def prepared(two_file_fileset, tmp_path_factory) -> Path:
    """Output folder of ``advcalib condor prepare --jobs 2`` over the two-file fileset."""
    if "prepared" not in _SESSION:
        out = tmp_path_factory.mktemp("batch")
        code = main(["condor", "prepare", "--fileset", str(two_file_fileset), "--jobs", "2", "--out", str(out),
                     "--lumi", str(LUMI), "--directive", '+JobFlavour="workday"', "--", "--stored-only"])
        assert code == 0
        _SESSION["prepared"] = out
    return _SESSION["prepared"]


def submit_lines(path: Path) -> dict[str, str]:
    lines = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            lines[key.strip()] = value.strip()
    return lines


def test_prepare_writes_valid_submit_file(prepared):
    text = (prepared / "advcalib.sub").read_text()
    assert "${" not in text  # every template placeholder was filled
    lines = submit_lines(prepared / "advcalib.sub")
    assert lines["executable"] == str(prepared / "advcalib_job.sh")
    assert lines["arguments"] == "$(job_dir)"
    assert lines["request_memory"] == "4GB"
    assert lines["+JobFlavour"] == '"workday"'
    assert lines["transfer_input_files"] == f"$(job_dir)/fileset.json, {prepared / 'job.env'}"
    assert text.rstrip().endswith(f"queue job_dir from {prepared / 'jobs.txt'}")
    assert (prepared / "jobs.txt").read_text().split() == [str(prepared / "job_000"), str(prepared / "job_001")]
    assert os.access(prepared / "advcalib_job.sh", os.X_OK)


def test_prepare_job_filesets_cover_files_once(prepared, two_file_fileset, real_nano_dy):
    import json

    files = []
    for job in ("job_000", "job_001"):
        part = json.loads((prepared / job / "fileset.json").read_text())
        assert list(part) == ["dy"]
        assert part["dy"]["metadata"]["xsec"] == 6077.2
        files += list(part["dy"]["files"])
    # relative paths of the input fileset become absolute in the job filesets
    assert files == [str(real_nano_dy), str(two_file_fileset.parent / "nano_dy_copy.root")]


def test_prepare_job_arguments_reach_bash(prepared):
    script = f'source {prepared / "job.env"}; printf "%s\\n" "${{ADVCALIB_RUN_ARGS[@]}}"'
    printed = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert printed == ["--lumi", "10.0", "--stored-only"]


def test_prepare_rejects_existing_jobs(prepared, two_file_fileset, capsys):
    code = main(["condor", "prepare", "--fileset", str(two_file_fileset), "--jobs", "2", "--out", str(prepared),
                 "--lumi", str(LUMI)])
    assert code == 1
    assert "job_000 exists" in capsys.readouterr().out


def test_prepare_without_lumi_rejected(two_file_fileset, tmp_path, capsys):
    code = main(["condor", "prepare", "--fileset", str(two_file_fileset), "--jobs", "1", "--out", str(tmp_path / "jobs")])
    assert code == 1
    assert "pass --lumi" in capsys.readouterr().out
    assert not (tmp_path / "jobs").exists()


def test_prepare_environment_tarball_in_submit_file(two_file_fileset, tmp_path):
    tarball = tmp_path / "env.tar.gz"
    tarball.write_bytes(b"packed environment")
    from advcalib.scaleout.condor import CondorJobOptions

    prepared_jobs = prepare_jobs(two_file_fileset, jobs=1, out_dir=tmp_path / "jobs", lumi=LUMI,
                                 options=CondorJobOptions(env_tarball=tarball))
    lines = submit_lines(prepared_jobs.submit_file)
    assert lines["transfer_input_files"].endswith(str(tarball))
    assert lines["environment"] == '"ADVCALIB_ENV_TARBALL=env.tar.gz"'


# --- job wrapper --------------------------------------------------------------------------


@pytest.mark.slow  # a full `advcalib run` with every derived step and plot
def test_job_wrapper_runs_locally(prepared):
    job = prepared / "job_000"
    env = dict(os.environ, ADVCALIB_SKIP_ENV="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(prepared / "advcalib_job.sh"), str(job)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = load(str(job / "hists.coffea"))
    assert result["datasets"]["dy"]["n_events"] == 40
    assert result["lumi"] == LUMI
    assert result["cutflow"]["dy"]["light"]["mm"]["all"] == 40
    assert not list(job.glob(".partial-*"))
    assert (job / "fileset.json").is_file()


# --- merge --------------------------------------------------------------------------------


def run_job(fileset_path: Path) -> dict:
    """Process and normalise one fileset in this process, as ``advcalib run --stored-only`` does."""
    from advcalib.fileset import coffea_fileset, load_fileset
    from advcalib.processor import CalibrationProcessor
    from advcalib.run import normalise
    from advcalib.selections import default_selections

    light = [selection for selection in default_selections() if selection.name == "light"]
    datasets = load_fileset(fileset_path)
    raw = run_processor(CalibrationProcessor(models={}, selections=light), coffea_fileset(datasets),
                        ExecutorOptions(chunksize=40, schema_name="PFNanoAODSchema"))
    return normalise(raw, datasets, lumi=LUMI, models={}, selections=light)


@pytest.fixture
def job_outputs(prepared, two_file_fileset, tmp_path_factory) -> tuple[list[Path], dict]:
    """Job outputs saved under a copy of the prepared folder, and one run over both files."""
    if "outputs" not in _SESSION:
        folder = tmp_path_factory.mktemp("merge")
        paths = []
        for job in ("job_000", "job_001"):
            (folder / job).mkdir()
            save(run_job(prepared / job / "fileset.json"), str(folder / job / "hists.coffea"))
            paths.append(folder / job / "hists.coffea")
        (folder / "prepare.json").write_text((prepared / "prepare.json").read_text())
        _SESSION["outputs"] = (paths, run_job(two_file_fileset))
    return _SESSION["outputs"]


def test_merge_equals_single_run(job_outputs):
    paths, single = job_outputs
    merged = merge_outputs(load_outputs(paths))
    assert merged["cutflow"] == single["cutflow"]
    assert merged["datasets"]["dy"]["n_events"] == single["datasets"]["dy"]["n_events"] == 80
    assert merged["datasets"]["dy"]["norm"] == pytest.approx(single["datasets"]["dy"]["norm"], rel=1e-12)
    for name, h in single["hists"].items():
        # without sumw in the fileset each job had its own norm; the merge rescales them
        np.testing.assert_allclose(merged["hists"][name].view(flow=True).value, h.view(flow=True).value, rtol=1e-12)
        np.testing.assert_allclose(merged["hists"][name].view(flow=True).variance, h.view(flow=True).variance, rtol=1e-12)
    assert sum(h.sum(flow=True).value for h in merged["hists"].values()) != 0


def test_merge_cli_writes_output(job_outputs, capsys):
    paths, _ = job_outputs
    out = paths[0].parent.parent
    assert main(["merge", *map(str, paths), "--out", str(out), "--no-finish"]) == 0
    assert "merged 2 outputs (80 events)" in capsys.readouterr().out
    assert load(str(out / "hists.coffea"))["datasets"]["dy"]["n_events"] == 80


def test_merge_cli_reports_missing_job(job_outputs, capsys):
    paths, _ = job_outputs
    out = paths[0].parent.parent
    assert main(["merge", str(paths[0]), "--out", str(out), "--no-finish"]) == 1
    assert "job_001" in capsys.readouterr().out


def test_merge_rejects_disagreeing_metadata(job_outputs):
    paths, _ = job_outputs
    first, second = load_outputs(paths)
    second["datasets"]["dy"]["xsec"] = 1.0
    with pytest.raises(MergeError, match="dataset 'dy': metadata 'xsec' is 6077.2 in a.coffea but 1.0 in b.coffea"):
        merge_outputs([first, second], names=["a.coffea", "b.coffea"])
    second["datasets"]["dy"]["xsec"] = 6077.2
    second["lumi"] = 20.0
    with pytest.raises(MergeError, match="'lumi' is 10.0 in a.coffea but 20.0 in b.coffea"):
        merge_outputs([first, second], names=["a.coffea", "b.coffea"])
