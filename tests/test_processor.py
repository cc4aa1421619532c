"""CalibrationProcessor on the real CMS files and on hand-checked pieces of its bookkeeping.

The packaged models ``nominal`` and ``adversarial`` and the CMS Run 2 ONNX network run on
the real PFNano jets.
"""

from __future__ import annotations

import pickle

import awkward as ak
import cloudpickle
import numpy as np
import pytest
import torch
from coffea import processor
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from advcalib import histograms
from advcalib.processor import (
    STORED_MODEL,
    CalibrationProcessor,
    flavour_names,
    match_rows,
    stored_discriminators,
    unique_pairs,
)
from advcalib.selections import MissingInputError, Selection, make_selection
from advcalib.selections.cuts import Cut, CutTable, SelectionSteps

torch.set_num_threads(1)


def leading_jet(events, cuts, channel) -> SelectionSteps:
    """Test selection: every event with a jet above the table's pt, probe = Jet[0]."""
    has_jet = ak.num(events.Jet[events.Jet.pt > cuts["jet_pt"]], axis=1) > 0
    return SelectionSteps(steps={"jet": has_jet}, probe=ak.zeros_like(has_jet, dtype=np.int64), osss=1)


ALL_JETS = Selection(name="bottom", channel="emu", cuts=CutTable((Cut("jet_pt", 20.0, "jet pt > value"),)), function=leading_jet)


def run_runner(fileset, instance, *, executor=None, chunksize=100_000):
    runner = processor.Runner(executor=executor or processor.IterativeExecutor(), schema=PFNanoAODSchema, chunksize=chunksize)
    return runner(fileset, instance)


def events_of(path, metadata):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
                                       metadata=metadata).events()


# --- pieces ---------------------------------------------------------------------------


def test_flavour_names():
    assert flavour_names(np.array([5, 4, 0, 21, 5])).tolist() == ["b", "c", "light", "light", "b"]


def test_unique_pairs_and_rows():
    events, jets, rows = unique_pairs(np.array([3, 1, 3, 1]), np.array([2, 0, 2, 4]))
    assert events.tolist() == [1, 1, 3]
    assert jets.tolist() == [0, 4, 2]
    assert rows.tolist() == [2, 0, 2, 1]


def test_match_rows_finds_each_pair():
    found = match_rows(np.array([5, 0, 2]), np.array([1, 3, 0]), np.array([0, 2, 5]), np.array([3, 0, 1]), source="x")
    assert found.tolist() == [1, 2, 0]


def test_match_rows_missing_pair_raises():
    with pytest.raises(RuntimeError, match="not built"):
        match_rows(np.array([0]), np.array([1]), np.array([0]), np.array([2]), source="x")


def test_stored_discriminators_pfnano(real_pfnano):
    events = events_of(real_pfnano, {"filename": str(real_pfnano)})
    jets = events.Jet
    event_ids = np.array([0, 0, 1])
    jet_ids = np.array([0, 1, 0])
    values = stored_discriminators(events, event_ids, jet_ids, source="pfnano")
    b = np.array([jets.btagDeepFlavB[e][j] for e, j in zip(event_ids, jet_ids)])
    uds = np.array([jets.btagDeepFlavUDS[e][j] for e, j in zip(event_ids, jet_ids)])
    g = np.array([jets.btagDeepFlavG[e][j] for e, j in zip(event_ids, jet_ids)])
    cvl = np.array([jets.btagDeepFlavCvL[e][j] for e, j in zip(event_ids, jet_ids)])
    np.testing.assert_allclose(values["BvsAll"], b)
    np.testing.assert_allclose(values["BvsL"], b / (b + uds + g), rtol=1e-6)
    np.testing.assert_allclose(values["CvsL"], cvl)


def test_stored_discriminators_from_b_and_c(real_nano_dy):
    # Older NanoAOD keeps only B and C = P(c): CvsL = C / (1 - B), CvsB = C / (C + B).
    events = events_of(real_nano_dy, {"filename": str(real_nano_dy)})
    assert "btagDeepFlavCvL" not in events.Jet.fields
    counts = ak.to_numpy(ak.num(events.Jet, axis=1))
    event_ids = np.flatnonzero(counts > 0)
    jet_ids = np.zeros_like(event_ids)
    values = stored_discriminators(events, event_ids, jet_ids, source="dy")
    b = ak.to_numpy(ak.firsts(events.Jet.btagDeepFlavB))[event_ids]
    c = ak.to_numpy(ak.firsts(events.Jet.btagDeepFlavC))[event_ids]
    valid = (b >= 0) & (c >= 0)
    assert valid.sum() > 10
    np.testing.assert_allclose(values["CvsL"][valid], c[valid] / (1 - b[valid]), rtol=1e-5)
    np.testing.assert_allclose(values["CvsB"][valid], c[valid] / (c[valid] + b[valid]), rtol=1e-5)
    np.testing.assert_allclose(values["BvsL"][valid], b[valid] / (1 - c[valid]), rtol=1e-5)
    assert np.all(values["CvsL"][~valid] == -1)


def test_missing_triggers_name_the_file(real_nano_dy):
    events = events_of(real_nano_dy, {"filename": str(real_nano_dy)})
    selection = make_selection("light", "mm", triggers=("HLT_NotInThisFile",))
    with pytest.raises(MissingInputError, match=r"nano_dy\.root: none of the light/mm triggers HLT_NotInThisFile"):
        selection.apply(events)


def test_processor_pickles_without_taggers():
    instance = CalibrationProcessor(models={"nominal": "nominal"})
    instance._taggers = {"nominal": object()}
    copy = pickle.loads(cloudpickle.dumps(instance))
    assert copy.models == {"nominal": "nominal"}
    assert not hasattr(copy, "_taggers")


def test_stored_name_reserved():
    with pytest.raises(ValueError, match="reserved"):
        CalibrationProcessor(models={STORED_MODEL: "nominal"})


# --- real files through coffea's Runner --------------------------------------------------


def test_deepjet_models_on_pfnano(real_pfnano, onnx_run2):
    fileset = {"ttbar": {"files": {str(real_pfnano): "Events"}, "metadata": {"is_data": False, "xsec": 833.9}}}
    models = {"nominal": "nominal", "adversarial": "adversarial", "cms_run2": str(onnx_run2)}
    out = run_runner(fileset, CalibrationProcessor(models=models, selections=[ALL_JETS]))
    assert not out["skipped_models"]
    n_probes = out["cutflow"]["ttbar"]["bottom"]["emu"]["jet"]
    assert n_probes > 0
    h = out["hists"]["BvsAll"]
    assert set(h.axes["model"]) == {"nominal", "adversarial", "cms_run2", STORED_MODEL}
    weights = {model: h[{"model": model, "systematic": "nominal"}].sum(flow=True).value for model in h.axes["model"]}
    # every model fills every probe jet once, with the same genWeight
    for model in ("nominal", "adversarial", "cms_run2"):
        assert weights[model] == pytest.approx(weights[STORED_MODEL])
    assert weights[STORED_MODEL] != 0


def test_cms_onnx_close_to_stored(real_pfnano, onnx_run2):
    events = events_of(real_pfnano, {"dataset": "ttbar", "filename": str(real_pfnano), "is_data": False})
    instance = CalibrationProcessor(models={"cms_run2": str(onnx_run2)}, selections=[ALL_JETS])
    n = int(ak.sum(ak.num(events.Jet, axis=1) > 0))
    event_ids = np.flatnonzero(ak.to_numpy(ak.num(events.Jet, axis=1)) > 0)
    values = instance._model_values(events, event_ids, np.zeros(n, dtype=np.int64), run_taggers=True, source="pfnano")
    stored, computed = values[STORED_MODEL]["BvsAll"], values["cms_run2"]["BvsAll"]
    assert computed.shape == stored.shape == (n,)
    assert np.median(np.abs(computed - stored)) < 0.05


def test_empty_chunk_shape(real_nano_dy):
    events = events_of(real_nano_dy, {"dataset": "dy", "filename": str(real_nano_dy), "is_data": False})[:0]
    out = CalibrationProcessor(models={}).process(events)
    assert set(out["hists"]) == set(histograms.make_histograms())
    assert set(out["truth_hists"]) == set(histograms.make_histograms())
    assert out["cutflow"]["dy"]["charm"]["m"]["all"] == 0
    assert out["n_events"] == {"dy": 0}
