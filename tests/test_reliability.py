"""Failure modes of a calibration campaign on real, deliberately broken files.

Broken inputs are made in temporary folders from the real CMS files: truncated copies,
garbage bytes, trees with zero entries or without some branches, and Run 3 branch names.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
from coffea import processor
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema
from coffea.util import load

from conftest import REAL_DATA, _require

from advcalib import histograms
from advcalib.atomic import save_atomic
from advcalib.fileset import FilesetError, load_fileset
from advcalib.inputs import build_deepjet_inputs, required_branches
from advcalib.naming import AliasedPFNanoAODSchema, alias_map, canonical_name
from advcalib.preflight import (
    CANDIDATE_BEHAVIOUR_BRANCHES,
    EVENT_BRANCHES,
    SELECTION_BRANCHES,
    SIMULATION_BRANCHES,
    BadFileError,
    PreflightError,
    check_fileset,
    read_header,
    run_report,
)
from advcalib.processor import CalibrationProcessor
from advcalib.resume import CHUNK_DIR, ResumableProcessor, ResumeError, configuration_fingerprint
from advcalib.selections import Selection, default_selections, make_selection
from advcalib.selections.cuts import Cut, CutTable, SelectionSteps

torch.set_num_threads(1)

# The slimmed copies drop branches that coffea's schema links but advcalib never reads.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Missing event_ids:RuntimeWarning"),
]

TRIGGERS = sorted({t for s in default_selections() if "triggers" in s.cuts.names() for t in s.cuts["triggers"]})
ELECTRON_ID = ["Electron_mvaFall17V2Iso_WP80", "Electron_cutBased"]
STORED = [f"Jet_btagDeepFlav{name}" for name in ("B", "CvL", "CvB", "C", "UDS", "G")]
#: What a calibration run reads from a PFNano file, and nothing else.
RUN_BRANCHES = sorted(
    {
        *EVENT_BRANCHES, *SELECTION_BRANCHES, *SIMULATION_BRANCHES, *required_branches("pfcands"), *CANDIDATE_BEHAVIOUR_BRANCHES,
        *ELECTRON_ID, *STORED, "PSWeight",
    }
)


def first_jet(events, cuts, channel) -> SelectionSteps:
    """Test selection: every event with a jet, probe = Jet[0]; the real selections keep none of the PFNano events."""
    has_jet = ak.num(events.Jet, axis=1) > 0
    return SelectionSteps(steps={"jet": has_jet}, probe=ak.zeros_like(has_jet, dtype=np.int64), osss=1)


ANY_JET = Selection(name="bottom", channel="emu", cuts=CutTable((Cut("jet_pt", 20.0, "unused"),)), function=first_jet)


# --- helpers that write broken copies of real files -------------------------------------------


def rewrite(source: Path, target: Path, *, keep=None, drop=(), rename=None, transform=None, stop=None) -> Path:
    """Write a copy of the ``Events`` tree of ``source`` with some branches kept, dropped or renamed.

    Jagged branches are regrouped by collection so that uproot writes one counter per
    collection, as NanoAOD does; ``transform(arrays)`` may edit the arrays first.
    """
    tree = uproot.open(source)["Events"]
    names = [n for n in tree.keys() if (keep is None or n in keep or n.startswith("n")) and n not in drop]
    arrays = tree.arrays(names, library="ak", how=dict, entry_stop=stop)
    if transform is not None:
        transform(arrays)
    rename = rename or (lambda name: name)
    collections = {n[1:] for n in names if n.startswith("n") and any(m.startswith(n[1:] + "_") for m in names)}
    flat, groups = {}, {}
    for name in names:
        prefix = name.split("_")[0]
        if name.startswith("n") and name[1:] in collections:
            continue
        if prefix in collections:
            groups.setdefault(prefix, {})[name[len(prefix) + 1:]] = arrays[name]
        else:
            flat[rename(name)] = arrays[name]
    for prefix, fields in groups.items():
        flat[rename(prefix + "_x")[:-2]] = ak.zip(fields)
    with uproot.recreate(target) as out:
        types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in flat.items()}
        tree_out = out.mktree("Events", types, counter_name=lambda name: f"n{name}")
        if len(next(iter(flat.values()))):
            tree_out.extend(flat)
    return target


def run3_name(name: str) -> str:
    for old, new in (("PFCands_", "PFCand_"), ("JetPFCands_", "JetPFCand_"), ("fixedGridRhoFastjetAll", "Rho_fixedGridRhoFastjetAll")):
        if name.startswith(old):
            return new + name[len(old):]
    return name


def write_fileset(path: Path, datasets: dict) -> Path:
    path.write_text(json.dumps(datasets))
    return path


def mc(*files: Path) -> dict:
    return {"files": [str(f) for f in files], "metadata": {"is_data": False, "xsec": 100.0}}


def events_of(path: Path, **metadata):
    metadata = {"dataset": "ds", "filename": str(path), "is_data": False, **metadata}
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager", metadata=metadata).events()


@pytest.fixture(scope="module")
def pfnano_slim(tmp_path_factory) -> Path:
    """The real PFNano file with only the branches a run reads."""
    real_pfnano = _require(REAL_DATA / "pfnano.root")
    return rewrite(real_pfnano, tmp_path_factory.mktemp("slim") / "pfnano_slim.root", keep=set(RUN_BRANCHES) | set(TRIGGERS))


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    from advcalib.models import DeepJet, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "random.pt"
    save_checkpoint(path, DeepJet().eval(), config={}, feature_scales=None, metadata={"note": "random weights"})
    return path


# --- Run 3 naming -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("PFCand_pt", "PFCands_pt"),
        ("nPFCand", "nPFCands"),
        ("JetPFCand_pFCandIdx", "JetPFCands_pFCandsIdx"),
        ("Rho_fixedGridRhoFastjetAll", "fixedGridRhoFastjetAll"),
        ("PFCands_pt", "PFCands_pt"),
        ("Jet_pt", "Jet_pt"),
    ],
)
def test_canonical_name(branch, expected):
    assert canonical_name(branch) == expected


def test_alias_never_hides_present_branch():
    renames = alias_map(["PFCands_pt", "PFCand_pt", "PFCand_eta"])
    assert renames == {"PFCand_eta": "PFCands_eta"}


def test_run3_names_give_same_inputs(tmp_path, pfnano_slim):
    run3 = rewrite(pfnano_slim, tmp_path / "run3.root", rename=run3_name)
    assert "PFCand_pt" in uproot.open(run3)["Events"].keys()
    renamed = NanoEventsFactory.from_root({str(run3): "Events"}, schemaclass=AliasedPFNanoAODSchema, mode="eager").events()
    original = events_of(pfnano_slim)
    built, expected = build_deepjet_inputs(renamed), build_deepjet_inputs(original)
    assert built.source == expected.source == "pfcands"
    for got, want in zip(built.arrays(), expected.arrays()):
        np.testing.assert_array_equal(got, want)
    report = check_fileset(load_fileset(write_fileset(tmp_path / "fs.json", {"run3": mc(run3)})))
    assert not report.errors
    assert report.headers[str(run3)].renamed["PFCand_pt"] == "PFCands_pt"


def test_run3_names_same_histograms(tmp_path, pfnano_slim, random_checkpoint):
    run3 = rewrite(pfnano_slim, tmp_path / "run3.root", rename=run3_name)
    outputs = []
    for path, schema in ((pfnano_slim, PFNanoAODSchema), (run3, AliasedPFNanoAODSchema)):
        fileset = {"ttbar": {"files": {str(path): "Events"}, "metadata": {"is_data": False, "xsec": 1.0}}}
        instance = CalibrationProcessor(models={"random": str(random_checkpoint)}, selections=[ANY_JET])
        runner = processor.Runner(executor=processor.IterativeExecutor(), schema=schema)
        outputs.append(runner(fileset, instance))
    original, renamed = outputs
    assert not renamed["skipped_models"]
    assert renamed["cutflow"] == original["cutflow"]
    assert original["hists"]["BvsL"][{"model": "random"}].sum(flow=True).value != 0
    for name, h in original["hists"].items():
        np.testing.assert_array_equal(renamed["hists"][name].view(flow=True)["value"], h.view(flow=True)["value"], err_msg=name)


# --- unreadable, truncated and empty files -----------------------------------------------------


def test_garbage_file_named(tmp_path):
    bad = tmp_path / "garbage.root"
    bad.write_bytes(b"this is not a ROOT file" * 100)
    with pytest.raises(BadFileError, match="garbage.root.*--skip-bad-files"):
        read_header(str(bad), "Events")


def test_truncated_file_stops_run(tmp_path, real_nano_dy):
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(real_nano_dy.read_bytes()[: real_nano_dy.stat().st_size // 2])
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"dy": mc(real_nano_dy, truncated)}))
    report = check_fileset(datasets, need_deepjet_inputs=False)
    with pytest.raises(PreflightError, match="truncated.root cannot be read") as error:
        report.raise_for_errors()
    assert "nano_dy.root" not in str(error.value)


def test_skip_bad_files_lists_every_file(tmp_path, real_nano_dy):
    bad = []
    for index in range(2):
        path = tmp_path / f"bad_{index}.root"
        path.write_bytes(real_nano_dy.read_bytes()[: 1000 * (index + 1)])
        bad.append(path)
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"dy": mc(real_nano_dy, *bad)}))
    report = check_fileset(datasets, need_deepjet_inputs=False, skip_bad_files=True)
    report.raise_for_errors()
    assert sorted(report.skipped_files) == sorted(str(path) for path in bad)
    assert list(report.usable(datasets)["dy"].files) == [str(real_nano_dy)]
    assert sorted(report.as_dict()["skipped_files"]) == sorted(str(path) for path in bad)


def test_skipped_files_change_normalisation(tmp_path, real_nano_dy, real_nano_dimuon):
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"\0" * 100)
    fileset = {
        "dy": {"files": [str(real_nano_dy), str(bad)], "metadata": {"is_data": False, "xsec": 1.0, "sumw": 50.0}},
        "data": {"files": [str(real_nano_dimuon), str(bad)], "metadata": {"is_data": True, "lumi": 2.0}},
    }
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", fileset))
    report = check_fileset(datasets, need_deepjet_inputs=False, skip_bad_files=True)
    usable = report.usable(datasets)
    assert usable["dy"].metadata.sumw is None  # normalised with the processed genWeight sum
    assert usable["data"].metadata.lumi == 2.0
    run = run_report(preflight=report, raw={"failed_files": {str(bad): ["chunk failed"]}, "n_sanitized": {"dy": 3}})
    assert run["failed_files"] == {str(bad): [report.skipped_files[str(bad)], "chunk failed"]}
    assert run["sanitized_inputs"] == {"dy": 3}
    json.dumps(run)


def test_zero_entry_file_warns(tmp_path, pfnano_slim):
    empty = rewrite(pfnano_slim, tmp_path / "empty.root", stop=0)
    assert uproot.open(empty)["Events"].num_entries == 0
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"ttbar": mc(empty)}))
    report = check_fileset(datasets)
    assert not report.errors
    assert report.empty_files == [str(empty)]
    assert list(report.usable(datasets)) == ["ttbar"]


def test_file_without_tree_left_out(tmp_path, real_nano_dy):
    keyless = tmp_path / "keyless.root"
    uproot.recreate(keyless).close()
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"dy": mc(real_nano_dy, keyless)}))
    report = check_fileset(datasets, need_deepjet_inputs=False)
    assert not report.errors
    assert report.empty_files == [str(keyless)]
    assert list(report.usable(datasets)["dy"].files) == [str(real_nano_dy)]


def test_wrong_tree_name(tmp_path, real_nano_dy):
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"dy": {"files": {str(real_nano_dy): "Tree"}, "metadata": {"is_data": True}}}))
    report = check_fileset(datasets, need_deepjet_inputs=False)
    assert len(report.errors) == 1
    assert "no tree 'Tree'" in report.errors[0].message


def test_zero_events_output_shape(tmp_path, pfnano_slim, random_checkpoint):
    empty = rewrite(pfnano_slim, tmp_path / "empty.root", stop=0)
    events = events_of(empty, dataset="ttbar")
    out = CalibrationProcessor(models={"random": str(random_checkpoint)}).process(events)
    assert set(out["hists"]) == set(histograms.make_histograms())
    assert out["n_events"] == {"ttbar": 0}
    assert all(h.sum(flow=True).value == 0 for h in out["hists"].values())
    assert {s.name for s in default_selections()} == set(out["cutflow"]["ttbar"])


def drop_jets_and_candidates(arrays: dict) -> None:
    """Events 0-2 lose every jet (and its candidates and vertices); events 3-5 keep jets without candidates."""
    n = len(arrays["run"])
    no_jets = np.arange(n) < 3
    no_cands = np.arange(n) < 6
    for name, values in arrays.items():
        if not isinstance(values, ak.Array) or values.ndim != 2:
            continue
        if name.startswith(("Jet_", "JetSVs_")):
            mask = no_jets
        elif name.startswith(("JetPFCands_", "PFCands_")):
            mask = no_cands
        else:
            continue
        keep = ak.local_index(values, axis=1) < ak.Array(np.where(mask, 0, 10_000))
        arrays[name] = values[keep]


def test_events_without_jets_or_candidates(tmp_path, pfnano_slim, random_checkpoint):
    path = rewrite(pfnano_slim, tmp_path / "sparse.root", transform=drop_jets_and_candidates)
    events = events_of(path, dataset="ttbar")
    assert ak.to_list(ak.num(events.Jet, axis=1)[:3]) == [0, 0, 0]
    assert ak.sum(ak.num(events.PFCands, axis=1)[:6]) == 0
    inputs = build_deepjet_inputs(events)
    rows = np.isin(inputs.event_index, [3, 4, 5])
    assert rows.any()
    assert np.all(inputs.cpf[rows] == 0)
    out = CalibrationProcessor(models={"random": str(random_checkpoint)}, selections=[ANY_JET]).process(events)
    n_with_jets = int(np.sum(ak.to_numpy(ak.num(events.Jet, axis=1)) > 0))
    assert out["cutflow"]["ttbar"]["bottom"]["emu"] == {"all": len(events), "jet": n_with_jets}
    filled = out["hists"]["probe_pt"][{"model": "random", "systematic": "nominal"}].sum(flow=True).value
    assert filled == pytest.approx(float(np.sum(ak.to_numpy(events.genWeight)[ak.to_numpy(ak.num(events.Jet, axis=1)) > 0])))
    everything = CalibrationProcessor(models={"random": str(random_checkpoint)}).process(events)
    assert everything["cutflow"]["ttbar"]["light"]["mm"]["all"] == len(events)


# --- missing branches and triggers -------------------------------------------------------------


def test_missing_branches_listed_with_files(tmp_path, pfnano_slim):
    lacking = rewrite(pfnano_slim, tmp_path / "lacking.root", drop={"Muon_tightId", "genWeight"})
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"ttbar": mc(pfnano_slim, lacking)}))
    with pytest.raises(PreflightError) as error:
        check_fileset(datasets).raise_for_errors()
    message = str(error.value)
    assert "Muon_tightId" in message
    assert "genWeight" in message
    assert "lacking.root" in message
    assert "pfnano_slim.root" not in message


def test_missing_deepjet_inputs(tmp_path, real_nano_dy, pfnano_slim):
    datasets = load_fileset(write_fileset(tmp_path / "fs.json", {"dy": mc(real_nano_dy), "ttbar": mc(pfnano_slim)}))
    report = check_fileset(datasets)
    assert len(report.errors) == 1
    error = report.errors[0]
    assert error.dataset == "dy"
    assert error.files == (str(real_nano_dy),)
    assert "JetPFCands_jetIdx" in error.message
    assert "--stored-only" in error.message
    assert report.input_sources == {str(pfnano_slim): "pfcands"}
    warned = check_fileset(datasets, missing_inputs="warn")
    assert not warned.errors
    assert any("DeepJet inputs" in finding.message for finding in warned.warnings)


def test_only_run_branches_suffice(pfnano_slim, random_checkpoint):
    # The preflight branch lists are complete: a file with nothing else runs every selection.
    events = events_of(pfnano_slim, dataset="ttbar")
    out = CalibrationProcessor(models={"random": str(random_checkpoint)}).process(events)
    assert out["n_events"] == {"ttbar": 10}


def test_missing_triggers(tmp_path, pfnano_slim):
    mm_triggers = make_selection("light", "mm").cuts["triggers"]
    some = rewrite(pfnano_slim, tmp_path / "some.root", drop={mm_triggers[1]})
    report = check_fileset(load_fileset(write_fileset(tmp_path / "a.json", {"ttbar": mc(some)})))
    assert not [f for f in report.errors if "light/mm" in f.message]
    assert any("light/mm" in f.message and mm_triggers[1] in f.message for f in report.warnings)
    none = rewrite(pfnano_slim, tmp_path / "none.root", drop=set(mm_triggers))
    report = check_fileset(load_fileset(write_fileset(tmp_path / "b.json", {"ttbar": mc(none)})))
    errors = [f for f in report.errors if "light/mm" in f.message]
    assert len(errors) == 1
    assert errors[0].files == (str(none),)


def test_truth_sidecar_misaligned(tmp_path, real_nano_dimuon):
    sidecar = tmp_path / "truth.root"
    with uproot.recreate(sidecar) as out:
        out["Truth"] = {"Jet_hadronFlavour": ak.Array([[5, 0]] * 3)}
    fileset = {"data": {"files": [str(real_nano_dimuon)], "metadata": {"is_data": True, "lumi": 1.0, "truth": {str(real_nano_dimuon): str(sidecar)}}}}
    report = check_fileset(load_fileset(write_fileset(tmp_path / "fs.json", fileset)), need_deepjet_inputs=False)
    assert any("3 entries" in f.message and "40" in f.message for f in report.errors)


def test_metadata_typo_warns(tmp_path, real_nano_dimuon):
    fileset = {"data": {"files": [str(real_nano_dimuon)], "metadata": {"is_data": True, "lumi": 1.0, "xsecc": 3.0}}}
    report = check_fileset(load_fileset(write_fileset(tmp_path / "fs.json", fileset)), need_deepjet_inputs=False)
    assert any("did you mean 'xsec'" in f.message for f in report.warnings)


# --- NaN and infinite inputs ---------------------------------------------------------------------


def test_nan_inputs_counted(tmp_path, pfnano_slim):
    # A jet-level input and a vertex input, which reach the final check unchanged; CMSSW's
    # catch_infs already replaces non-finite candidate features where they are computed.
    def poison(arrays):
        for name in ("Jet_DeepCSV_trackSumJetEtRatio", "JetSVs_d3dsig"):
            values = arrays[name]
            flat = ak.to_numpy(ak.flatten(values)).copy()
            flat[:2] = np.nan
            flat[2:4] = np.inf
            arrays[name] = ak.unflatten(flat, ak.num(values))

    path = rewrite(pfnano_slim, tmp_path / "nan.root", transform=poison)
    inputs = build_deepjet_inputs(events_of(path))
    clean = build_deepjet_inputs(events_of(pfnano_slim))
    assert clean.n_sanitized == 0
    assert inputs.n_sanitized == 8
    for array in inputs.arrays():
        assert np.all(np.isfinite(array))


# --- fileset schema, models, outputs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"files": [], "metadata": {"is_data": True}}, "'broken' is invalid: files:"),
        ({"files": ["x.root"], "metadata": {"is_data": False, "xsec": -1}}, "metadata.xsec"),
        ({"files": ["x.root"], "metadata": {"xsec": 1.0}}, "metadata.is_data: Field required"),
        ({"files": ["x.root"], "metadata": {"is_data": True}, "treename": "E"}, "treename: Extra inputs"),
    ],
    ids=["no-files", "negative-xsec", "no-is_data", "unknown-key"],
)
def test_fileset_error_names_entry(tmp_path, entry, expected):
    path = write_fileset(tmp_path / "fs.json", {"ok": {"files": ["y.root"], "metadata": {"is_data": True}}, "broken": entry})
    with pytest.raises(FilesetError, match="broken") as error:
        load_fileset(path, check_files=False)
    assert expected in str(error.value)


def test_bad_model_fails_before_events(tmp_path):
    from advcalib.run import RunConfig, run_calibration

    garbage = tmp_path / "garbage.root"
    garbage.write_bytes(b"\0" * 64)
    fileset = write_fileset(tmp_path / "fs.json", {"data": {"files": [str(garbage)], "metadata": {"is_data": True, "lumi": 1.0}}})
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not an onnx model")
    config = RunConfig(fileset=fileset, out=tmp_path / "out", models={"broken": str(model)})
    with pytest.raises(ValueError, match="model.onnx is not a readable ONNX model"):
        run_calibration(config)


def test_torchscript_wrong_shape_rejected(tmp_path):
    from advcalib.models import load_tagger

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :6]

    path = tmp_path / "flat.ts"
    torch.jit.save(torch.jit.script(Flat()), str(path))
    with pytest.raises(ValueError, match="flat.ts: TorchScript model does not take DeepJet inputs"):
        load_tagger(path)


def test_onnx_wrong_input_shape_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from advcalib.models import load_tagger

    shapes = {"input_1": [15], "input_2": [25, 10], "input_3": [25, 6], "input_4": [4, 12], "input_5": [1]}
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape]) for name, shape in shapes.items()]
    output = helper.make_tensor_value_info("ID_pred/Softmax:0", TensorProto.FLOAT, ["N", 6])
    weights = numpy_helper.from_array(np.zeros((15, 6), dtype=np.float32), "weights")
    nodes = [helper.make_node("MatMul", ["input_1", "weights"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["ID_pred/Softmax:0"], axis=1)]
    graph = helper.make_graph(nodes, "wrong_cpf", inputs, [output], initializer=[weights])
    path = tmp_path / "wrong_cpf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ValueError, match=r"wrong_cpf.onnx is not a DeepJet ONNX network.*input_2 \[N, 25, 10\], expected \[N, 25, 16\]"):
        load_tagger(path)


def test_output_folder_kept_without_force(tmp_path):
    from advcalib.run import prepare_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "hists.coffea").write_text("old result")
    with pytest.raises(FileExistsError, match="--force"):
        prepare_output(out, force=False)
    assert (out / "hists.coffea").read_text() == "old result"
    prepare_output(out, force=True)


def test_atomic_save_keeps_old_file(tmp_path):
    target = tmp_path / "hists.coffea"
    save_atomic({"value": 1}, target)
    with pytest.raises(TypeError):
        save_atomic({"value": (x for x in range(3))}, target)
    assert load(target) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["hists.coffea"]


def test_atomic_files_readable_like_open(tmp_path):
    from advcalib.atomic import FILE_MODE, write_json_atomic

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_json_atomic(tmp_path / "report.json", {"a": 1})
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == FILE_MODE
    assert json.loads(written.read_text()) == {"a": 1}


# --- resume and reproducibility -----------------------------------------------------------------


class Interrupt(RuntimeError):
    """Stands in for a run killed after some chunks."""


class InterruptAt(processor.ProcessorABC):
    """Processor that fails on one chunk, as a job killed there does.

    coffea's executors unpickle the processor for each chunk, so the chunk is chosen by its
    dataset and first entry rather than by a call counter.
    """

    def __init__(self, inner, *, dataset, entrystart):
        self.inner, self.dataset, self.entrystart = inner, dataset, entrystart

    def process(self, events):
        metadata = events.metadata
        if metadata["dataset"] == self.dataset and metadata["entrystart"] == self.entrystart:
            raise Interrupt("job interrupted")
        return self.inner.process(events)

    def postprocess(self, accumulator):
        return self.inner.postprocess(accumulator)


@pytest.fixture(scope="module")
def run_fileset(tmp_path_factory) -> dict:
    """The real DY simulation and 2018 dimuon data, 40 events each, with only the branches a run reads."""
    folder = tmp_path_factory.mktemp("run")
    keep = set(RUN_BRANCHES) | set(TRIGGERS)
    dy = rewrite(_require(REAL_DATA / "nano_dy.root"), folder / "dy.root", keep=keep)
    data = rewrite(_require(REAL_DATA / "nano_dimuon.root"), folder / "dimuon.root", keep=keep)
    return {
        "dy": {"files": {str(dy): "Events"}, "metadata": {"is_data": False, "xsec": 6077.2}},
        "data": {"files": {str(data): "Events"}, "metadata": {"is_data": True, "lumi": 1.0}},
    }


def light_processor():
    return CalibrationProcessor(models={}, selections=[make_selection("light", "mm")])


def run_resumable(fileset, out, inner, *, chunksize, resume=False, executor=None, fingerprint=None):
    wrapped = ResumableProcessor(inner, out=out, resume=resume, fingerprint=fingerprint)
    wrapped.prepare()
    runner = processor.Runner(executor=executor or processor.IterativeExecutor(), schema=PFNanoAODSchema, chunksize=chunksize)
    return runner(fileset, wrapped), wrapped.summary


def assert_same_hists(first, second):
    for name, h in first["hists"].items():
        other = second["hists"][name]
        assert list(h.axes["dataset"]) == list(other.axes["dataset"]), name
        np.testing.assert_array_equal(h.view(flow=True)["value"], other.view(flow=True)["value"], err_msg=name)
        np.testing.assert_array_equal(h.view(flow=True)["variance"], other.view(flow=True)["variance"], err_msg=name)


def test_resume_equals_uninterrupted(tmp_path, run_fileset):
    full, summary = run_resumable(run_fileset, tmp_path / "full", light_processor(), chunksize=20)
    assert summary == {"chunks": 4, "reused": 0, "processed": 4}

    out = tmp_path / "interrupted"
    fingerprint = configuration_fingerprint(light_processor())
    interrupted = InterruptAt(light_processor(), dataset="data", entrystart=20)
    with pytest.raises(Exception, match="job interrupted"):
        run_resumable(run_fileset, out, interrupted, chunksize=20, fingerprint=fingerprint)
    assert len(list((out / CHUNK_DIR).glob("*.coffea"))) == 3

    resumed, summary = run_resumable(run_fileset, out, light_processor(), chunksize=20, resume=True)
    assert summary == {"chunks": 4, "reused": 3, "processed": 1}
    assert_same_hists(full, resumed)
    assert resumed["cutflow"] == full["cutflow"]
    assert resumed["sumw"] == full["sumw"]


def test_resume_rejects_other_configuration(tmp_path, run_fileset):
    run_resumable(run_fileset, tmp_path, light_processor(), chunksize=40)
    other = CalibrationProcessor(models={}, selections=[make_selection("light", "ee")])
    with pytest.raises(ResumeError, match="another configuration"):
        ResumableProcessor(other, out=tmp_path, resume=True).prepare()


def test_damaged_chunk_processed_again(tmp_path, run_fileset):
    full, _ = run_resumable(run_fileset, tmp_path, light_processor(), chunksize=40)
    damaged = sorted((tmp_path / CHUNK_DIR).glob("*.coffea"))[0]
    damaged.write_bytes(b"\0" * 10)
    resumed, summary = run_resumable(run_fileset, tmp_path, light_processor(), chunksize=40, resume=True)
    assert summary == {"chunks": 2, "reused": 1, "processed": 1}
    assert_same_hists(full, resumed)


def test_resume_needs_saved_chunks(tmp_path):
    (tmp_path / "hists.coffea").write_text("result of an earlier run")
    with pytest.raises(ResumeError, match="no saved chunks"):
        ResumableProcessor(light_processor(), out=tmp_path, resume=True).prepare()
    assert (tmp_path / "hists.coffea").read_text() == "result of an earlier run"


def damage_basket(path: Path, target: Path, branch: str) -> Path:
    """Copy ``path`` with the end of the first basket of ``branch`` overwritten; the header stays intact."""
    tree = uproot.open(path)["Events"]
    seek, size = int(tree[branch].member("fBasketSeek")[0]), int(tree[branch].member("fBasketBytes")[0])
    data = bytearray(path.read_bytes())
    data[seek + size - 20 : seek + size] = b"\x55" * 20
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("skip", [False, True], ids=["stop", "skip"])
def test_damaged_basket_named(tmp_path, run_fileset, skip):
    from advcalib.scaleout import ExecutorOptions, run_processor

    good = Path(next(iter(run_fileset["dy"]["files"])))
    bad = damage_basket(good, tmp_path / "damaged.root", "Muon_pt")
    assert read_header(str(bad), "Events").num_entries == 40
    fileset = {"dy": {"files": {str(good): "Events", str(bad): "Events"}, "metadata": run_fileset["dy"]["metadata"]}}
    options = ExecutorOptions(executor="iterative", chunksize=20, skip_bad_files=skip, retries=0)
    wrapped = ResumableProcessor(light_processor(), out=tmp_path / "out")
    wrapped.prepare()
    if not skip:
        with pytest.raises(Exception, match="damaged.root"):
            run_processor(wrapped, fileset, options, schema=PFNanoAODSchema)
        return
    out = run_processor(wrapped, fileset, options, schema=PFNanoAODSchema)
    assert list(out["failed_files"]) == [str(bad)]
    assert len(out["failed_files"][str(bad)]) == 2  # both chunks of the damaged file
    assert out["n_events"] == {"dy": 40}
    assert wrapped.summary == {"chunks": 2, "reused": 0, "processed": 2}


def test_same_chunks_same_bits_any_executor(tmp_path, run_fileset):
    iterative, _ = run_resumable(run_fileset, tmp_path / "a", light_processor(), chunksize=20)
    # Two worker threads finish the chunks in any order; worker processes would add only start-up time.
    futures, _ = run_resumable(run_fileset, tmp_path / "b", light_processor(), chunksize=20,
                               executor=processor.FuturesExecutor(workers=2, pool=ThreadPoolExecutor, status=False))
    assert_same_hists(iterative, futures)


def test_chunk_size_changes_only_rounding(tmp_path, run_fileset):
    small, _ = run_resumable(run_fileset, tmp_path / "a", light_processor(), chunksize=13)
    large, _ = run_resumable(run_fileset, tmp_path / "b", light_processor(), chunksize=40)
    assert small["cutflow"] == large["cutflow"]
    for name, h in small["hists"].items():
        other = large["hists"][name]
        for dataset in h.axes["dataset"]:
            got = h[{"dataset": dataset}].view(flow=True)
            want = other[{"dataset": dataset}].view(flow=True)
            np.testing.assert_allclose(got["value"], want["value"], rtol=1e-12, atol=0, err_msg=name)
            np.testing.assert_allclose(got["variance"], want["variance"], rtol=1e-12, atol=0, err_msg=name)


# --- the whole run: preflight, resume and the run report -----------------------------------------


@pytest.fixture
def quick_run(monkeypatch):
    """Runs with the light/mm selection and without the steps after ``save``, to keep the tests short."""
    from advcalib import run

    light_only = lambda **options: CalibrationProcessor(selections=[make_selection("light", "mm")], **options)  # noqa: E731
    monkeypatch.setattr(run, "CalibrationProcessor", light_only)
    monkeypatch.setattr(run, "STEPS", tuple(step for step in run.STEPS if step[0] in run.REQUIRED_STEPS))
    return run.run_calibration


def run_config(fileset_path: Path, out: Path, **options):
    from advcalib.run import RunConfig
    from advcalib.scaleout import ExecutorOptions

    scaleout = ExecutorOptions(executor="iterative", chunksize=20, retries=0, status=False)
    return RunConfig(fileset=fileset_path, out=out, models={}, scaleout=scaleout, lumi=1.0, **options)


def test_run_resumes_after_failure(tmp_path, run_fileset, quick_run):
    run_calibration = quick_run
    dy, data = Path(next(iter(run_fileset["dy"]["files"]))), Path(next(iter(run_fileset["data"]["files"])))
    fileset = {"dy": {"files": [str(dy)], "metadata": run_fileset["dy"]["metadata"]}}
    broken = tmp_path / "data.root"
    damage_basket(data, broken, "Muon_pt")
    fileset["data"] = {"files": [str(broken)], "metadata": run_fileset["data"]["metadata"]}
    fileset_path = write_fileset(tmp_path / "fileset.json", fileset)

    full = run_calibration(run_config(write_fileset(tmp_path / "good.json", {**fileset, "data": run_fileset["data"]}), tmp_path / "full"))
    with pytest.raises(Exception, match="data.root"):
        run_calibration(run_config(fileset_path, tmp_path / "out"))
    assert len(list((tmp_path / "out" / CHUNK_DIR).glob("*.coffea"))) == 2  # the DY chunks finished
    with pytest.raises(FileExistsError, match="--force"):
        run_calibration(run_config(fileset_path, tmp_path / "out"))

    shutil.copyfile(data, broken)  # the file is repaired in place
    resumed = run_calibration(run_config(fileset_path, tmp_path / "out", resume=True))
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert report["chunks"] == {"chunks": 4, "reused": 2, "processed": 2}
    assert not (tmp_path / "out" / CHUNK_DIR).exists()
    assert resumed.result["cutflow"] == full.result["cutflow"]
    for name, h in full.result["hists"].items():
        np.testing.assert_array_equal(h.view(flow=True)["value"], resumed.result["hists"][name].view(flow=True)["value"])


def test_run_report_lists_skipped_file(tmp_path, run_fileset, quick_run):
    run_calibration = quick_run
    garbage = tmp_path / "garbage.root"
    garbage.write_bytes(b"garbage" * 100)
    fileset = {**run_fileset, "data": {**run_fileset["data"], "files": {**run_fileset["data"]["files"], str(garbage): "Events"}}}
    config = run_config(write_fileset(tmp_path / "fileset.json", fileset), tmp_path / "out")
    with pytest.raises(PreflightError, match="garbage.root cannot be read"):
        run_calibration(config)
    assert not (tmp_path / "out" / "hists.coffea").exists()
    skipping = config.model_copy(update={"scaleout": config.scaleout.model_copy(update={"skip_bad_files": True})})
    summary = run_calibration(skipping)
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert list(report["failed_files"]) == [str(garbage)]
    assert list(summary.result["failed_files"]) == [str(garbage)]
    assert report["sanitized_inputs"] == {"data": 0, "dy": 0}  # no tagger ran, so nothing was replaced
