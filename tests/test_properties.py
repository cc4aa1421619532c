"""Property-based tests (hypothesis): selections on random events, OS-SS subtraction, JSD."""

from __future__ import annotations

import math

import awkward as ak
import hist
import numpy as np
import pytest
from coffea.nanoevents.methods import candidate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from advcalib.divergence import jsd
from advcalib.histograms import subtract_os_ss
from advcalib.selections import default_selections

SELECTIONS = default_selections()
TRIGGERS = sorted({name.removeprefix("HLT_") for s in SELECTIONS for name in s.cuts["triggers"]})
PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- selections on random jagged events -----------------------------------------------------


def _objects(draw, n_events: int, fields: dict, max_per_event: int, name: str = "PtEtaPhiMCandidate") -> ak.Array:
    counts = draw(st.lists(st.integers(0, max_per_event), min_size=n_events, max_size=n_events))
    total = int(sum(counts))
    columns = {name: draw(strategy(total)) for name, strategy in fields.items()}
    zipped = ak.zip(columns, with_name=name, behavior=candidate.behavior)
    return ak.unflatten(zipped, np.asarray(counts, dtype=np.int64))


def _floats(low: float, high: float):
    return lambda n: arrays(np.float64, n, elements=st.floats(low, high, allow_nan=False))


def _ints(values: list[int]):
    return lambda n: arrays(np.int64, n, elements=st.sampled_from(values))


def _bools():
    return lambda n: arrays(np.bool_, n, elements=st.booleans())


LEPTON = {"pt": _floats(3.0, 120.0), "eta": _floats(-2.7, 2.7), "phi": _floats(-3.14, 3.14), "mass": _floats(0.0, 0.2),
          "charge": _ints([-1, 1])}
MUON = LEPTON | {"tightId": _bools(), "pfRelIso04_all": _floats(0.0, 1.0), "dxy": _floats(-0.2, 0.2), "dxyErr": _floats(0.001, 0.05)}
ELECTRON = LEPTON | {"mvaFall17V2Iso_WP80": _bools(), "cutBased": _ints([0, 1, 2, 3, 4])}
JET = {"pt": _floats(10.0, 200.0), "eta": _floats(-3.0, 3.0), "phi": _floats(-3.14, 3.14), "mass": _floats(0.0, 20.0),
       "jetId": _ints([0, 2, 6]), "muEF": _floats(0.0, 1.0), "neEmEF": _floats(0.0, 1.0)}


@st.composite
def random_events(draw) -> ak.Array:
    """Events with 0-3 muons and electrons, 0-6 jets, random trigger bits and MET."""
    n = draw(st.integers(1, 12))
    hlt = {name: np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool) for name in TRIGGERS}
    met = {"pt": draw(_floats(0.0, 150.0)(n)), "phi": draw(_floats(-3.14, 3.14)(n))}
    return ak.zip(
        {
            "Muon": _objects(draw, n, MUON, 3),
            "Electron": _objects(draw, n, ELECTRON, 3),
            "Jet": _objects(draw, n, JET, 6, "PtEtaPhiMLorentzVector"),
            "HLT": ak.zip(hlt),
            "MET": ak.zip(met),
        },
        depth_limit=1,
        behavior=candidate.behavior,
    )


@PROPERTY_SETTINGS
@given(events=random_events())
@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: f"{s.name}-{s.channel}")
def test_selection_invariants(selection, events):
    result = selection.apply(events)
    n = len(events)
    assert result.mask.shape == result.probe.shape == result.osss.shape == (n,)
    assert set(np.unique(result.osss[result.mask])) <= {-1, 1}
    assert np.all(result.osss[~result.mask] == 0)
    assert np.all(result.probe[~result.mask] == -1)
    counts = list(result.cutflow.values())
    assert counts[0] == n
    assert all(later <= earlier for earlier, later in zip(counts, counts[1:]))
    assert counts[-1] == result.n_selected

    cuts = selection.cuts
    n_jets = ak.to_numpy(ak.num(events.Jet, axis=1))
    for event in np.flatnonzero(result.mask):
        probe = int(result.probe[event])
        assert 0 <= probe < n_jets[event]
        jet = events.Jet[event][probe]
        assert jet.pt > cuts["jet_pt"]
        assert abs(jet.eta) < cuts["jet_abseta"]
        assert jet.jetId & cuts["jet_id_mask"]


# --- OS-SS subtraction ---------------------------------------------------------------------------


def _osss_hist(values: np.ndarray, variances: np.ndarray) -> hist.Hist:
    h = hist.Hist(hist.axis.IntCategory([1, -1], name="osss"), hist.axis.Regular(len(values[0]), 0, 1, name="x"),
                  storage=hist.storage.Weight())
    view = h.view()
    view["value"] = values
    view["variance"] = variances
    return h


contents = st.integers(2, 8).flatmap(
    lambda n: st.tuples(*(arrays(np.float64, (2, n), elements=st.floats(-1e3, 1e3, allow_nan=False)) for _ in range(2)),
                        arrays(np.float64, (2, n), elements=st.floats(0, 1e3)), arrays(np.float64, (2, n), elements=st.floats(0, 1e3)),
                        st.floats(-5, 5, allow_nan=False))
)


@settings(max_examples=50, deadline=None)
@given(contents)
def test_os_ss_linear_variances_add(case):
    values_a, values_b, var_a, var_b, factor = case
    a, b = _osss_hist(values_a, var_a), _osss_hist(values_b, var_b)
    sub_a, sub_b = subtract_os_ss(a), subtract_os_ss(b)
    np.testing.assert_allclose(sub_a.values(), values_a[0] - values_a[1])
    np.testing.assert_allclose(sub_a.variances(), var_a[0] + var_a[1])
    combined = subtract_os_ss(_osss_hist(values_a + factor * values_b, var_a + var_b))
    np.testing.assert_allclose(combined.values(), sub_a.values() + factor * sub_b.values(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(combined.variances(), sub_a.variances() + sub_b.variances(), rtol=1e-12)


# --- Jensen-Shannon divergence -------------------------------------------------------------------

shapes = st.integers(2, 20).flatmap(
    lambda n: st.tuples(*(arrays(np.float64, n, elements=st.floats(0, 1e6, allow_nan=False)) for _ in range(2)))
).filter(lambda pq: pq[0].sum() > 0 and pq[1].sum() > 0)


@settings(max_examples=100, deadline=None)
@given(shapes)
def test_jsd_symmetric_and_bounded(pq):
    p, q = pq
    forward, backward = jsd(p, q), jsd(q, p)
    assert forward == pytest.approx(backward, abs=1e-12)
    assert 0.0 <= forward <= math.log(2.0)


@settings(max_examples=100, deadline=None)
@given(shapes, st.floats(1e-3, 1e3))
def test_jsd_zero_iff_equal_shapes(pq, scale):
    p, q = pq
    assert jsd(p, p * scale) == pytest.approx(0.0, abs=1e-12)
    same_shape = np.allclose(p / p.sum(), q / q.sum(), rtol=1e-9, atol=1e-12)
    if not same_shape:
        assert jsd(p, q) > 0.0


def test_jsd_disjoint_is_ln2():
    assert jsd(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(math.log(2.0))
