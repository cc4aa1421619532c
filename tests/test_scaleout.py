"""Scale-out: executors, both Dask modes, worker shipping, failures and options.

The executor tests compare whole histograms bit by bit (values and variances), so any
chunk that is lost, doubled or added in another order shows up. No HTCondor pool or
Gateway server exists in the test environment: those clusters are built and inspected,
and the Gateway test drives a stand-in Gateway whose client is a real LocalCluster.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import awkward as ak
import cloudpickle
import hist
import numpy as np
import pytest
from coffea import processor
from hypothesis import given, settings
from hypothesis import strategies as st

from advcalib.scaleout import ExecutorOptions, load_options, open_executor, run_processor
from advcalib.scaleout.chunks import FileInfo, FileTask, plan_chunks
from advcalib.scaleout.clusters import apply_scaling, gateway_cluster_options, make_gateway_cluster, make_htcondor_cluster
from advcalib.scaleout.config import GatewayOptions, HTCondorOptions
from advcalib.scaleout.guard import EventCountMismatch, check_cutflow_totals, check_entry_totals
from advcalib.scaleout.plugins import cached_model, model_load_counts

# Worker processes cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
warnings.filterwarnings("ignore", category=RuntimeWarning, module="coffea")

CHUNKSIZE = 9  # 40 events of nano_dy.root -> 4 chunks of 10


class JetPtProcessor(processor.ProcessorABC):
    """Stand-in processor: weighted jet pt per dataset and an event count cutflow."""

    def process(self, events):
        dataset = events.metadata["dataset"]
        h = hist.Hist.new.StrCat([], name="dataset", growth=True).Reg(25, 0, 250, name="pt").Weight()
        counts = ak.num(events.Jet.pt)
        # A non-integer weight, so that the order of additions could show in the last bits.
        weights = np.repeat(np.asarray(events.genWeight, dtype=np.float64) * 0.731, np.asarray(counts))
        h.fill(dataset=dataset, pt=ak.flatten(events.Jet.pt), weight=weights)
        return {"hist": h, "cutflow": {dataset: {"all_jets": {"any": {"all": len(events)}}}}}

    def postprocess(self, accumulator):
        return accumulator


class ModelScaleProcessor(processor.ProcessorABC):
    """Stand-in processor that loads a shipped 'model' (a numpy scale factor) per worker."""

    def __init__(self, source: str):
        self.source = source

    def process(self, events):
        import advcalib

        scale = cached_model(self.source, loader=_load_numpy)
        return {
            "scaled_events": float(len(events) * scale[0]),
            "package": {advcalib.__file__: 1},
            "loads": set(model_load_counts().items()),
        }

    def postprocess(self, accumulator):
        return accumulator


def _load_numpy(path, *, device=None):
    return np.load(path)


class FlakyProcessor(JetPtProcessor):
    """Fails the first ``failures`` attempts of every chunk.

    Attempts are counted in files, because each chunk gets its own unpickled copy of
    the processor.
    """

    def __init__(self, failures: int, counter_dir: Path, starts: tuple[int, ...] | None = None):
        self.failures = failures
        self.counter_dir = counter_dir
        self.starts = starts

    def process(self, events):
        start = events.metadata["entrystart"]
        if self.starts is not None and start not in self.starts:
            return super().process(events)
        counter = self.counter_dir / f"attempts-{start}"
        with counter.open("a") as stream:
            stream.write("x")
        if len(counter.read_text()) <= self.failures:
            raise OSError(f"simulated read error at entry {start}")
        return super().process(events)


def dy_fileset(path: Path) -> dict:
    return {"dy": {"files": {str(path): "Events"}, "metadata": {"is_data": False}}}


def assert_same_hist(actual: hist.Hist, expected: hist.Hist) -> None:
    assert list(actual.axes[0]) == list(expected.axes[0])
    assert np.array_equal(actual.values(flow=True), expected.values(flow=True))
    assert np.array_equal(actual.variances(flow=True), expected.variances(flow=True))


def options(**values) -> ExecutorOptions:
    return ExecutorOptions(chunksize=CHUNKSIZE, schema_name="NanoAODSchema", **values)


SLIM_BRANCHES = ("run", "luminosityBlock", "event", "genWeight", "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass")
_SESSION: dict[str, object] = {}


@pytest.fixture
def slim_dy(real_nano_dy, tmp_path_factory) -> Path:
    """The 40 events of nano_dy.root with only the branches of JetPtProcessor.

    Building the NanoAOD schema of all 1500 branches per chunk would dominate the run
    time of these tests; the slim copy keeps the real values.
    """
    if "slim_dy" not in _SESSION:
        import uproot

        arrays = uproot.open(f"{real_nano_dy}:Events").arrays(list(SLIM_BRANCHES))
        path = tmp_path_factory.mktemp("slim") / "nano_dy_slim.root"
        jets = ak.zip({name: arrays[f"Jet_{name}"] for name in ("pt", "eta", "phi", "mass")})
        columns = {name: arrays[name] for name in ("run", "luminosityBlock", "event", "genWeight")} | {"Jet": jets}
        with uproot.recreate(path) as out:
            # mktree writes a TTree, as NanoAOD has; assigning a dict would write an RNTuple
            tree = out.mktree("Events", {name: column.type for name, column in columns.items()})
            tree.extend(columns)
        _SESSION["slim_dy"] = path
    return _SESSION["slim_dy"]


@pytest.fixture
def iterative_output(slim_dy):
    """Output of the iterative executor over the slim DY file, computed once per session."""
    if "iterative" not in _SESSION:
        _SESSION["iterative"] = run_processor(JetPtProcessor(), dy_fileset(slim_dy), options())
    return _SESSION["iterative"]


# --- chunking ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.integers(0, 500), min_size=1, max_size=5), chunksize=st.integers(1, 120))
def test_plan_chunks_cover_each_entry_once(entries, chunksize):
    infos = [FileInfo(FileTask("d", f"f{i}.root", "Events"), num_entries=n, uuid=bytes(16)) for i, n in enumerate(entries)]
    items = plan_chunks(infos, chunksize=chunksize)
    for index, n in enumerate(entries):
        ranges = [(item.entrystart, item.entrystop) for item in items if item.filename == f"f{index}.root"]
        covered = [entry for start, stop in ranges for entry in range(start, stop)]
        assert covered == list(range(n))
        assert all(stop > start for start, stop in ranges)


# --- executors and modes ----------------------------------------------------------------


def test_iterative_counts_every_event(iterative_output):
    assert iterative_output["cutflow"]["dy"]["all_jets"]["any"]["all"] == 40
    assert iterative_output["failed_files"] == {}
    assert iterative_output["hist"].values().sum() != 0


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_local_cluster_bit_identical(slim_dy, iterative_output, workers):
    dask_options = options(executor="dask", dask={"workers": workers, "processes": False})
    output = run_processor(JetPtProcessor(), dy_fileset(slim_dy), dask_options)
    assert_same_hist(output["hist"], iterative_output["hist"])
    assert output["cutflow"] == iterative_output["cutflow"]


@pytest.mark.parametrize("executor", ["iterative", "dask"])
def test_dask_awkward_mode_bit_identical(slim_dy, iterative_output, executor):
    mode_options = options(mode="dask-awkward", executor=executor, dask={"workers": 2, "processes": False})
    output = run_processor(JetPtProcessor(), dy_fileset(slim_dy), mode_options)
    assert_same_hist(output["hist"], iterative_output["hist"])
    assert output["cutflow"] == iterative_output["cutflow"]


def test_calibration_processor_modes_identical(real_nano_dy):
    from advcalib.processor import CalibrationProcessor
    from advcalib.selections import default_selections

    light = [selection for selection in default_selections() if selection.name == "light"]
    instance = CalibrationProcessor(models={}, selections=light)
    fileset = {"dy": {"files": {str(real_nano_dy): "Events"}, "metadata": {"is_data": False, "xsec": 6077.2}}}
    # One chunk per mode: opening the 1500-branch tree dominates the time, and the
    # stand-in processor above already covers several chunks.
    runner = run_processor(instance, fileset, ExecutorOptions(chunksize=40))
    lazy_options = ExecutorOptions(chunksize=40, mode="dask-awkward", executor="dask", dask={"workers": 1, "processes": False})
    lazy = run_processor(instance, fileset, lazy_options)
    assert runner["n_events"] == lazy["n_events"] == {"dy": 40}
    assert runner["cutflow"] == lazy["cutflow"]
    for name, h in runner["hists"].items():
        assert np.array_equal(h.view(flow=True), lazy["hists"][name].view(flow=True)), name


def test_package_and_model_reach_worker_process(slim_dy, tmp_path):
    model = tmp_path / "scale.npy"
    np.save(model, np.array([2.5]))
    ship_options = options(executor="dask", dask={"workers": 1, "processes": True, "memory_limit": "1GB"})
    with open_executor(ship_options, models=[str(model)]) as session:
        model.unlink()  # from here on only the worker's shipped copy exists
        output = run_processor(ModelScaleProcessor(str(model)), dy_fileset(slim_dy), ship_options, session=session)
    assert output["scaled_events"] == pytest.approx(40 * 2.5)
    (package_path,) = output["package"]
    assert "advcalib.zip" in package_path
    # 4 chunks on one worker process saw one load of one worker-local copy
    ((local_copy, loads),) = output["loads"]
    assert local_copy.endswith("-scale.npy")
    assert local_copy != str(model)
    assert loads == 1


def test_cached_model_loads_tagger_once(onnx_run2):
    first = cached_model(str(onnx_run2))
    second = cached_model(str(onnx_run2))
    assert first is second
    assert first.kind == "onnx"
    assert model_load_counts()[str(onnx_run2)] == 1


# --- failures ---------------------------------------------------------------------------


def test_retries_recover_flaky_chunks(slim_dy, iterative_output, tmp_path):
    output = run_processor(FlakyProcessor(failures=1, counter_dir=tmp_path), dy_fileset(slim_dy), options(retries=1))
    assert_same_hist(output["hist"], iterative_output["hist"])
    assert output["failed_files"] == {}


def test_exhausted_retries_reported_when_skipping(slim_dy, iterative_output, tmp_path):
    flaky = FlakyProcessor(failures=5, counter_dir=tmp_path, starts=(10,))
    output = run_processor(flaky, dy_fileset(slim_dy), options(retries=1, skip_bad_files=True))
    assert output["failed_files"] == {str(slim_dy): ["entries 10-20: OSError: simulated read error at entry 10"]}
    assert (tmp_path / "attempts-10").read_text() == "xx"
    assert output["cutflow"]["dy"]["all_jets"]["any"]["all"] == 30
    assert 0 < output["hist"].sum().value < iterative_output["hist"].sum().value


def test_every_chunk_failing_raises(slim_dy, tmp_path):
    flaky = FlakyProcessor(failures=5, counter_dir=tmp_path)
    with pytest.raises(RuntimeError, match="no chunk produced an output.*simulated read error"):
        run_processor(flaky, dy_fileset(slim_dy), options(retries=0, skip_bad_files=True))


@pytest.fixture
def corrupt_root(tmp_path) -> Path:
    path = tmp_path / "corrupt.root"
    path.write_bytes(b"root\x00 this is not a ROOT file " * 64)
    return path


def test_skip_bad_files_lists_corrupt_file(slim_dy, corrupt_root, iterative_output):
    fileset = {"dy": {"files": {str(slim_dy): "Events", str(corrupt_root): "Events"}, "metadata": {"is_data": False}}}
    output = run_processor(JetPtProcessor(), fileset, options(skip_bad_files=True, retries=0))
    assert list(output["failed_files"]) == [str(corrupt_root)]
    assert "cannot open" in output["failed_files"][str(corrupt_root)][0]
    assert_same_hist(output["hist"], iterative_output["hist"])


def test_corrupt_file_raises_without_skip(slim_dy, corrupt_root):
    fileset = {"dy": {"files": {str(slim_dy): "Events", str(corrupt_root): "Events"}, "metadata": {"is_data": False}}}
    with pytest.raises(RuntimeError, match="corrupt.root") as error:
        run_processor(JetPtProcessor(), fileset, options(retries=0))
    assert "--skip-bad-files" in str(error.value)


def test_entry_totals_mismatch_names_numbers():
    check_entry_totals({"a.root": 40}, processed={"a.root": 30}, failed={"a.root": 10})
    with pytest.raises(EventCountMismatch, match=r"a.root: 30 processed \+ 0 in failed chunks != 40"):
        check_entry_totals({"a.root": 40}, processed={"a.root": 30}, failed={})


def test_cutflow_total_mismatch_raises():
    output = {"cutflow": {"dy": {"light": {"mm": {"all": 39, "trigger": 5}}}}}
    check_cutflow_totals(output, {"dy": 39})
    with pytest.raises(EventCountMismatch, match="cutflow 'all' = 39, entries processed = 40"):
        check_cutflow_totals(output, {"dy": 40})


# --- clusters ---------------------------------------------------------------------------


def test_htcondor_job_script(tmp_path):
    proxy = tmp_path / "x509up_u1000"
    proxy.write_text("proxy")
    condor_options = HTCondorOptions(
        cores=2, memory="3GB", disk="5GB", scale=3, x509_proxy=proxy, log_directory=tmp_path / "logs",
        job_extra_directives={"+JobFlavour": '"longlunch"'}, job_script_prologue=["source /cvmfs/sft.cern.ch/setup.sh"],
    )
    with make_htcondor_cluster(condor_options) as cluster:
        script = cluster.job_script()
    lines = dict(line.split(" = ", 1) for line in script.splitlines() if " = " in line)
    assert lines["MY.DaskWorkerCores"] == "2"
    assert lines["MY.DaskWorkerMemory"] == str(3 * 10**9)
    assert lines["MY.DaskWorkerDisk"] == str(5 * 10**9)
    assert lines["x509userproxy"] == str(proxy)
    assert lines["use_x509userproxy"] == "true"
    assert lines["+JobFlavour"] == '"longlunch"'
    assert lines["LogDirectory"] == str(tmp_path / "logs")
    assert "source /cvmfs/sft.cern.ch/setup.sh; " in lines["Arguments"]
    assert "distributed.cli.dask_worker" in lines["Arguments"]


def test_htcondor_missing_proxy_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="x509 proxy .*nothere"):
        make_htcondor_cluster(HTCondorOptions(x509_proxy=tmp_path / "nothere"))


class FakeGatewayCluster:
    def __init__(self, cluster_options, local_client_factory):
        self.cluster_options = cluster_options
        self.calls: list[tuple] = []
        self._client_factory = local_client_factory

    def scale(self, n):
        self.calls.append(("scale", n))

    def adapt(self, **bounds):
        self.calls.append(("adapt", bounds))

    def get_client(self):
        return self._client_factory()

    def close(self):
        self.calls.append(("close",))


class FakeGateway:
    """Stands in for dask_gateway.Gateway; offers the options of a typical server."""

    instances: list[FakeGateway] = []

    def __init__(self, **kwargs):
        from dask_gateway.options import Float, Integer, Mapping, String

        self.kwargs = kwargs
        self.clusters: list[FakeGatewayCluster] = []
        self.offered = (
            Integer("worker_cores", default=1, min=1, max=8),
            Float("worker_memory", default=2.0, min=1, max=32),
            String("image", default="coffeateam/coffea-dask:latest"),
            Mapping("environment", default={}),
        )
        FakeGateway.instances.append(self)

    def cluster_options(self):
        from dask_gateway.options import Options

        return Options(*self.offered)

    def new_cluster(self, cluster_options, shutdown_on_close=True):
        from distributed import Client

        cluster = FakeGatewayCluster(cluster_options, lambda: Client(processes=False, n_workers=1, threads_per_worker=1,
                                                                     dashboard_address=None))
        self.clusters.append(cluster)
        return cluster

    def close(self):
        pass


def test_gateway_cluster_options_set():
    gateway_options = GatewayOptions(
        address="https://gateway.example.org", proxy_address="tls://gateway.example.org:8786", auth="jupyterhub",
        worker_cores=2, worker_memory=6.0, image="registry.example.org/advcalib:1", environment={"OMP_NUM_THREADS": "1"},
        adapt_minimum=1, adapt_maximum=10,
    )
    gateway, cluster = make_gateway_cluster(gateway_options, gateway_class=FakeGateway)
    assert gateway.kwargs == {"address": "https://gateway.example.org", "proxy_address": "tls://gateway.example.org:8786",
                              "auth": "jupyterhub"}
    built = cluster.cluster_options
    assert built.worker_cores == 2
    assert built.worker_memory == 6.0
    assert built.image == "registry.example.org/advcalib:1"
    assert built.environment == {"OMP_NUM_THREADS": "1"}
    apply_scaling(cluster, gateway_options)
    assert cluster.calls == [("adapt", {"minimum": 1, "maximum": 10})]


def test_gateway_unknown_option_named():
    gateway = FakeGateway()
    with pytest.raises(ValueError, match="no cluster option 'worker_gpus'.*worker_cores"):
        gateway_cluster_options(gateway, GatewayOptions(cluster_options={"worker_gpus": 1}))


def test_gateway_executor_runs_processor(slim_dy, iterative_output):
    FakeGateway.instances.clear()
    gateway_options = options(executor="gateway", gateway={"scale": 4, "worker_cores": 1})
    with open_executor(gateway_options, gateway_class=FakeGateway) as session:
        output = run_processor(JetPtProcessor(), dy_fileset(slim_dy), gateway_options, session=session)
    assert_same_hist(output["hist"], iterative_output["hist"])
    (cluster,) = FakeGateway.instances[0].clusters
    assert cluster.calls == [("scale", 4), ("close",)]


# --- options ----------------------------------------------------------------------------

SITES_YAML = """
defaults:
  executor: dask
  chunksize: 50000
  retries: 2
  dask: {workers: 2, memory_limit: 3GB}
  htcondor: {memory: 4GB, cores: 1}
sites:
  lxplus:
    executor: htcondor
    htcondor:
      cores: 4
      job_extra_directives: {+JobFlavour: '"longlunch"'}
  coffea-casa:
    executor: gateway
    gateway: {address: "http://traefik:80", worker_memory: 4}
"""


@pytest.fixture
def sites_file(tmp_path) -> Path:
    path = tmp_path / "scaleout.yaml"
    path.write_text(SITES_YAML)
    return path


def test_site_overrides_defaults(sites_file):
    lxplus = load_options(sites_file, site="lxplus")
    assert lxplus.executor == "htcondor"
    assert lxplus.htcondor.cores == 4
    assert lxplus.htcondor.memory == "4GB"  # from defaults, merged key by key
    assert lxplus.htcondor.job_extra_directives == {"+JobFlavour": '"longlunch"'}
    assert lxplus.chunksize == 50000
    assert lxplus.retries == 2
    assert load_options(sites_file).executor == "dask"
    assert load_options(sites_file, site="coffea-casa").gateway.worker_memory == 4


def test_command_line_overrides_site(sites_file):
    merged = load_options(sites_file, site="lxplus", overrides={"htcondor": {"cores": 8, "memory": None}, "retries": 0})
    assert merged.htcondor.cores == 8
    assert merged.htcondor.memory == "4GB"  # None means: not given on the command line
    assert merged.retries == 0


def test_bad_key_named(sites_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITES_YAML.replace("cores: 4", "coress: 4"))
    with pytest.raises(ValueError, match=r"site lxplus.*unknown option 'htcondor.coress'"):
        load_options(bad, site="lxplus")
    with pytest.raises(ValueError, match="site 'cern' not found; sites in this file: coffea-casa, lxplus"):
        load_options(sites_file, site="cern")
    top = tmp_path / "top.yaml"
    top.write_text("default:\n  executor: dask\n")
    with pytest.raises(ValueError, match="unknown option 'default'"):
        load_options(top)


def test_invalid_value_named():
    with pytest.raises(ValueError, match="invalid option 'executor'"):
        load_options(overrides={"executor": "slurm"})
    with pytest.raises(ValueError, match="either scale or adapt_minimum"):
        load_options(overrides={"htcondor": {"scale": 2, "adapt_maximum": 4}})


def test_command_line_arguments_over_site(sites_file):
    import argparse

    from advcalib.scaleout.arguments import add_scaleout_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_scaleout_arguments(parser)
    args = parser.parse_args(["--scaleout-config", str(sites_file), "--site", "lxplus", "--scale", "5", "--skip-bad-files"])
    parsed = options_from_args(args)
    assert parsed.executor == "htcondor"
    assert parsed.htcondor.scale == 5
    assert parsed.htcondor.cores == 4
    assert parsed.skip_bad_files is True
    args = parser.parse_args(["--scaleout-config", str(sites_file), "--workers", "3", "--mode", "dask-awkward"])
    parsed = options_from_args(args)
    assert parsed.dask.workers == 3
    assert parsed.dask.memory_limit == "3GB"
    assert parsed.mode == "dask-awkward"
