"""DeepJet input building: helpers on hand-built arrays, the real PFNano file, both sources."""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from advcalib import spec
from advcalib.inputs import (
    DeepJetInputs,
    build_deepcsv_inputs,
    build_deepjet_inputs,
    deepjet_branches,
    required_branches,
)
from advcalib.inputs.builder import sanitize
from advcalib.inputs.numeric import catch_infs_and_bound, descending_key, rank_within_groups, scatter_slots

_CACHE: dict[str, object] = {}
_COLLECTIONS = ("Jet", "JetPFCands", "PFCands", "JetSVs", "SV")


def _read(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()


@pytest.fixture
def events(real_pfnano):
    if "events" not in _CACHE:
        _CACHE["events"] = _read(real_pfnano)
    return _CACHE["events"]


@pytest.fixture
def inputs(events):
    if "inputs" not in _CACHE:
        _CACHE["inputs"] = build_deepjet_inputs(events)
    return _CACHE["inputs"]


def _copy_branches(path: Path, *, extra: dict | None = None, empty_first_event: bool = False) -> dict:
    """Branches that both sources need, read from ``path``, grouped for ``uproot`` writing."""
    event_ids = ["run", "luminosityBlock", "event"]
    # Coffea's vector behaviours need positions and four-momenta besides what the builder reads.
    vertex_positions = [f"{c}_{x}" for c in ("PV", "SV") for x in "xyz"] + ["SV_pt", "SV_mass", "PFCands_mass"]
    names = sorted(set(required_branches("pfcands")) | {"Jet_btagDeepFlavB", *event_ids, *vertex_positions})
    arrays = uproot.open(path)["Events"].arrays(names)
    tree: dict = {}
    for collection in _COLLECTIONS:
        fields = {n[len(collection) + 1:]: arrays[n] for n in names if n.startswith(collection + "_")}
        if collection == "Jet" and extra:
            fields.update({n[len("Jet_"):]: v for n, v in extra.items()})
        record = ak.zip(fields)
        if empty_first_event:
            record = ak.concatenate([record[:1][:, :0], record[1:]])
        tree[collection] = record
    for name in ("PV_npvs", "PV_x", "PV_y", "PV_z", *event_ids):
        tree[name] = arrays[name]
    return tree


def _write(path: Path, tree: dict) -> Path:
    # mktree writes a TTree; plain assignment may write an RNTuple, which NanoEvents reads slowly.
    with uproot.recreate(path) as out:
        out.mktree("Events", tree)
    return path


@pytest.fixture
def both_sources_file(real_pfnano, inputs, tmp_path_factory):
    """Real events plus ``Jet_DeepJet_*`` branches holding the inputs derived from them."""
    if "both" not in _CACHE:
        counts = np.bincount(inputs.event_index, minlength=10)
        extra = deepjet_branches(inputs, counts)
        _CACHE["both"] = _write(tmp_path_factory.mktemp("both") / "both.root", _copy_branches(real_pfnano, extra=extra))
    return _CACHE["both"]


# ---------------------------------------------------------------- helpers on hand-built arrays


def test_catch_infs_and_bound_offsets_and_replaces():
    values = np.array([0.5, 2.0, -3.0, np.nan, np.inf, 1e33])
    out = catch_infs_and_bound(values, replace=7.0, low=-1.0, high=0.0, offset=-1.0)
    np.testing.assert_allclose(out, [-0.5, 0.0, -1.0, 0.0, 0.0, 0.0])
    chi2 = catch_infs_and_bound(np.array([np.nan, 12.0, -4.0]), replace=300, low=-1, high=300)
    np.testing.assert_allclose(chi2, [300.0, 12.0, -1.0])


def test_descending_key_puts_nonfinite_last():
    group = np.array([0, 0, 0, 0, 1])
    key = descending_key(np.array([1.0, np.nan, 5.0, np.inf, 2.0]))
    order, rank = rank_within_groups(group, key)
    assert order.tolist() == [2, 0, 1, 3, 4] or order.tolist() == [2, 0, 3, 1, 4]
    assert rank.tolist() == [0, 1, 2, 3, 0]


def test_rank_within_groups_second_key_breaks_ties():
    group = np.array([1, 0, 1, 0])
    order, rank = rank_within_groups(group, np.array([0.0, 0.0, 0.0, 0.0]), np.array([3.0, 2.0, 1.0, 4.0]))
    assert order.tolist() == [1, 3, 2, 0]
    assert rank.tolist() == [0, 1, 0, 1]


def test_scatter_slots_truncates_and_pads():
    rows = np.array([0, 0, 0, 2])
    rank = np.array([0, 1, 2, 0])
    features = np.arange(8, dtype=float).reshape(4, 2)
    out = scatter_slots(rows, rank, features, n_rows=3, slots=2)
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out[0], [[0, 1], [2, 3]])
    assert not out[1].any()
    np.testing.assert_array_equal(out[2], [[6, 7], [0, 0]])


def test_sanitize_counts_and_uses_defaults():
    array = np.zeros((2, *spec.CHARGED.shape))
    array[0, 3, spec.CHARGED.index("Cpfcan_chi2")] = np.nan
    array[1, 0, spec.CHARGED.index("Cpfcan_puppiw")] = -np.inf
    clean, n_bad = sanitize(array, spec.CHARGED)
    assert n_bad == 2
    assert clean.dtype == np.float32
    assert clean[0, 3, spec.CHARGED.index("Cpfcan_chi2")] == 300.0
    assert clean[1, 0, spec.CHARGED.index("Cpfcan_puppiw")] == 0.0


# ---------------------------------------------------------------- spec and container


def test_container_shapes_follow_spec(inputs):
    n = len(inputs)
    assert inputs.glob.shape == (n, *spec.GLOBAL.shape)
    assert inputs.cpf.shape == (n, *spec.CHARGED.shape)
    assert inputs.npf.shape == (n, *spec.NEUTRAL.shape)
    assert inputs.sv.shape == (n, *spec.VERTEX.shape)
    assert sum(a[0].size for a in inputs.arrays()) == spec.DEEPJET_N_INPUTS == 613
    assert all(a.dtype == np.float32 for a in inputs.arrays())
    assert list(inputs.onnx_feed()) == ["input_1", "input_2", "input_3", "input_4", "input_5"]


def test_container_rejects_wrong_shape():
    empty = DeepJetInputs.empty()
    with pytest.raises(ValueError, match="cpf has shape"):
        DeepJetInputs(
            glob=empty.glob, cpf=np.zeros((0, 24, 16)), npf=empty.npf, sv=empty.sv, jet_pt=empty.jet_pt,
            event_index=empty.event_index, jet_index=empty.jet_index, source="pfcands",
        )


def test_container_take_and_concatenate(inputs):
    part = inputs.take(np.array([3, 1]))
    assert part.jet_index.tolist() == inputs.jet_index[[3, 1]].tolist()
    both = DeepJetInputs.concatenate([part, inputs.take(slice(0, 2))])
    assert len(both) == 4
    np.testing.assert_array_equal(both.cpf[2:], inputs.cpf[:2])
    assert len(DeepJetInputs.concatenate([])) == 0


# ---------------------------------------------------------------- real PFNano file


def test_real_file_rows_and_source(events, inputs):
    n_jets = ak.num(events.Jet).to_numpy()
    assert len(inputs) == n_jets.sum() == 64
    assert inputs.source == "pfcands"
    assert inputs.n_sanitized == 0
    assert inputs.event_index.tolist() == np.repeat(np.arange(len(events)), n_jets).tolist()
    np.testing.assert_array_equal(inputs.jet_pt[:, 0], inputs.glob[:, 0])


def test_real_file_jet_pt_is_raw(events, inputs):
    raw = ak.flatten(events.Jet.pt * (1 - events.Jet.rawFactor)).to_numpy()
    np.testing.assert_allclose(inputs.glob[:, spec.GLOBAL.index("jet_pt")], raw, rtol=1e-6)


def test_real_file_no_nan(inputs):
    for array in inputs.arrays():
        assert np.isfinite(array).all()


@pytest.mark.parametrize(
    ("group", "attr", "count"),
    [(spec.CHARGED, "cpf", "nCpfcand"), (spec.NEUTRAL, "npf", "nNpfcand"), (spec.VERTEX, "sv", "nsv")],
    ids=["charged", "neutral", "vertex"],
)
def test_real_file_padding_beyond_count(inputs, group, attr, count):
    array = getattr(inputs, attr)
    filled = np.minimum(inputs.glob[:, spec.GLOBAL.index(count)], group.slots).astype(int)
    slot = np.arange(group.slots)[None, :]
    assert not array[slot >= filled[:, None]].any()
    assert array[slot < filled[:, None]].any(axis=-1).all()


def test_real_file_counts_not_truncated(inputs):
    assert inputs.glob[:, spec.GLOBAL.index("nCpfcand")].max() > spec.CHARGED.slots


@pytest.mark.parametrize(
    ("group", "attr", "count", "feature", "sign"),
    [
        (spec.CHARGED, "cpf", "nCpfcand", "Cpfcan_BtagPf_trackSip2dSig", -1),
        (spec.NEUTRAL, "npf", "nNpfcand", "Npfcan_drminsv", 1),
        (spec.VERTEX, "sv", "nsv", "sv_dxysig", -1),
    ],
    ids=["charged-sip2dsig-descending", "neutral-drminsv-ascending", "vertex-dxysig-descending"],
)
def test_real_file_sort_order(inputs, group, attr, count, feature, sign):
    array = getattr(inputs, attr)[:, :, group.index(feature)]
    filled = np.minimum(inputs.glob[:, spec.GLOBAL.index(count)], group.slots).astype(int)
    for row in np.flatnonzero(filled > 1):
        steps = np.diff(array[row, : filled[row]]) * sign
        assert (steps >= 0).all(), f"row {row}: {array[row, : filled[row]]}"


@pytest.mark.parametrize("group", [spec.CHARGED, spec.NEUTRAL, spec.VERTEX], ids=lambda g: g.name)
def test_real_file_clipping_respected(inputs, group):
    array = dict(zip(("global", "charged", "neutral", "vertex"), inputs.arrays()))[group.name]
    low, high = group.bounds()
    assert (array >= low).all()
    assert (array <= high).all()


def test_real_file_integer_features_are_integers(inputs):
    for group, array in zip(spec.DEEPJET_GROUPS, inputs.arrays()):
        values = array[..., group.integer_mask()[0] if group.slots > 1 else group.integer_mask()]
        np.testing.assert_array_equal(values, np.round(values))


def test_real_file_missing_tagvars_stay_minus_999(events, inputs):
    stored = ak.flatten(events.Jet.DeepCSV_vertexCategory).to_numpy()
    assert (stored == -999).any()
    np.testing.assert_array_equal(inputs.glob[:, spec.GLOBAL.index("TagVarCSV_vertexCategory")], stored)


def test_real_file_jets_without_candidates_are_zero(inputs):
    no_charged = inputs.glob[:, spec.GLOBAL.index("nCpfcand")] == 0
    assert no_charged.any()
    assert not inputs.cpf[no_charged].any()


def test_jet_index_selects_rows(events, inputs):
    jet_index = ak.Array([[0, 0], [], [1]] + [[]] * (len(events) - 3))
    part = build_deepjet_inputs(events, jet_index)
    assert part.event_index.tolist() == [0, 0, 2]
    assert part.jet_index.tolist() == [0, 0, 1]
    first_of_event2 = int(np.flatnonzero(inputs.event_index == 2)[0])
    for mine, full in zip(part.arrays(), inputs.arrays()):
        np.testing.assert_array_equal(mine[0], full[0])
        np.testing.assert_array_equal(mine[1], full[0])
        np.testing.assert_array_equal(mine[2], full[first_of_event2 + 1])


def test_jet_index_out_of_range_raises(events):
    jet_index = ak.Array([[99]] + [[]] * (len(events) - 1))
    with pytest.raises(IndexError, match="event 0"):
        build_deepjet_inputs(events, jet_index)


def test_no_selected_jets_gives_empty(events):
    empty = build_deepjet_inputs(events, ak.Array([[]] * len(events)))
    assert len(empty) == 0
    assert empty.cpf.shape == (0, 25, 16)


def test_deepcsv_inputs_match_branches(events):
    x = build_deepcsv_inputs(events)
    assert x.shape == (64, 66)
    assert x.dtype == np.float32
    column = spec.DEEPCSV.index("trackSip2dSig_0")
    np.testing.assert_array_equal(x[:, column], ak.flatten(events.Jet.DeepCSV_trackSip2dSig_0).to_numpy())


def test_missing_branches_name_them(real_nano_dy):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dy = NanoEventsFactory.from_root({str(real_nano_dy): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    with pytest.raises(KeyError, match="source pfcands lacks .* branches"):
        build_deepjet_inputs(dy)


def test_required_branches_unknown_source():
    with pytest.raises(ValueError, match="pfcands"):
        required_branches("tracks")


# ---------------------------------------------------------------- both sources, written files


def test_deepjet_branches_names(inputs):
    branches = deepjet_branches(inputs, np.bincount(inputs.event_index))
    assert "Jet_DeepJet_Cpfcan_BtagPf_trackSip2dSig_24" in branches
    assert "Jet_DeepJet_Npfcan_HadFrac_0" in branches
    assert "Jet_DeepJet_sv_d3dsig_3" in branches
    assert "Jet_DeepJet_nCpfcand" in branches
    assert len(branches) == 4 + 25 * 16 + 25 * 6 + 4 * 12


def test_both_sources_give_same_arrays(both_sources_file, inputs):
    events = _read(both_sources_file)
    stored = build_deepjet_inputs(events)
    derived = build_deepjet_inputs(events, source="pfcands")
    assert stored.source == "deepjet_branches"
    assert derived.source == "pfcands"
    for a, b, c in zip(stored.arrays(), derived.arrays(), inputs.arrays()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(stored.jet_pt, derived.jet_pt)


def test_event_without_jets(real_pfnano, inputs, tmp_path):
    events = _read(_write(tmp_path / "nojets.root", _copy_branches(real_pfnano, empty_first_event=True)))
    built = build_deepjet_inputs(events)
    n_first = int((inputs.event_index == 0).sum())
    assert 0 not in built.event_index
    assert len(built) == len(inputs) - n_first
    for mine, full in zip(built.arrays(), inputs.arrays()):
        np.testing.assert_array_equal(mine, full[n_first:])


def test_nan_inputs_sanitized_and_counted(real_pfnano, inputs, tmp_path):
    tree = _copy_branches(real_pfnano)
    pf = tree["PFCands"]
    puppi = ak.concatenate([ak.full_like(pf.puppiWeight[:1], np.nan), pf.puppiWeight[1:]])
    tree["PFCands"] = ak.with_field(pf, puppi, "puppiWeight")
    built = build_deepjet_inputs(_read(_write(tmp_path / "nan.root", tree)))
    in_event0 = inputs.event_index == 0
    expected = int(inputs.cpf[in_event0].any(axis=-1).sum() + inputs.npf[in_event0].any(axis=-1).sum())
    assert built.n_sanitized == expected
    assert np.isfinite(built.cpf).all()
    assert not built.cpf[in_event0][..., spec.CHARGED.index("Cpfcan_puppiw")].any()
