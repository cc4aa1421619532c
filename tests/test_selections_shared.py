"""Objects shared by the selections within one chunk: same results, computed once."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from advcalib.bench.samples import processor_preset
from advcalib.generate import generate
from advcalib.selections import default_selections, make_selection
from advcalib.selections.objects import shared, shared_objects


@pytest.fixture(scope="module")
def generated_files(tmp_path_factory):
    """Small generated DY, W+c and ttbar files, so that every selection selects events."""
    folder = tmp_path_factory.mktemp("shared")
    generate(processor_preset(400), folder, seed=2)
    return sorted(folder.glob("*.root"))


def _events(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()


def _assert_same(plain, with_shared):
    np.testing.assert_array_equal(with_shared.mask, plain.mask)
    np.testing.assert_array_equal(with_shared.probe, plain.probe)
    np.testing.assert_array_equal(with_shared.osss, plain.osss)
    assert with_shared.cutflow == plain.cutflow


def test_shared_objects_keep_every_result(generated_files, caplog):
    caplog.set_level(logging.ERROR)
    selections = default_selections()
    selected = {(s.name, s.channel): 0 for s in selections}
    for path in generated_files:
        events = _events(path)
        plain = [selection.apply(events) for selection in selections]
        with shared_objects(events):
            with_shared = [selection.apply(events) for selection in selections]
        for selection, before, after in zip(selections, plain, with_shared):
            _assert_same(before, after)
            selected[(selection.name, selection.channel)] += before.n_selected
    # Every selection must select events somewhere, or the comparison would prove little.
    assert all(count > 0 for count in selected.values()), selected


def test_shared_objects_keep_overridden_cuts(generated_files, caplog):
    caplog.set_level(logging.ERROR)
    events = _events(generated_files[0])
    selections = [make_selection("charm", "m"), make_selection("bottom", "m", muon_pt=40.0, jet_lepton_dr=0.3)]
    plain = [selection.apply(events) for selection in selections]
    with shared_objects(events):
        with_shared = [selection.apply(events) for selection in selections]
    for before, after in zip(plain, with_shared):
        _assert_same(before, after)


def test_shared_computes_once_per_key():
    events = object()
    calls = []

    def compute(value):
        calls.append(value)
        return value

    with shared_objects(events):
        assert shared(events, ("a", 1.0), lambda: compute(1)) == 1
        assert shared(events, ("a", 1.0), lambda: compute(2)) == 1
        assert shared(events, ("a", 2.0), lambda: compute(3)) == 3
        assert shared(events, ("b", [1, 2]), lambda: compute(4)) == 4
    assert calls == [1, 3, 4]


def test_shared_inactive_outside_block_or_for_other_events():
    events, other = object(), object()
    calls = []
    with shared_objects(events):
        shared(other, ("a",), lambda: calls.append("other"))
        shared(other, ("a",), lambda: calls.append("other"))
    shared(events, ("a",), lambda: calls.append("after"))
    shared(events, ("a",), lambda: calls.append("after"))
    assert calls == ["other", "other", "after", "after"]
