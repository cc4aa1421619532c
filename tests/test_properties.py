"""Property-based tests (hypothesis): selections on random events, OS-SS subtraction, JSD."""

from __future__ import annotations

import math

import awkward as ak
import hist
import numpy as np
import pytest
from coffea.nanoevents.methods import candidate
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from advcalib.divergence import jsd
from advcalib.histograms import subtract_os_ss
from advcalib.selections import default_selections

SELECTIONS = default_selections()
TRIGGERS = sorted({name.removeprefix("HLT_") for s in SELECTIONS for name in s.cuts["triggers"]})
PROPERTY_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- selections on random jagged events -----------------------------------------------------


MUON = dict(pt=30.0, eta=0.0, phi=0.0, mass=0.106, charge=-1, tightId=True, pfRelIso04_all=0.05, dxy=0.0, dxyErr=0.01)
ELECTRON = dict(pt=30.0, eta=0.0, phi=0.0, mass=0.0005, charge=-1, mvaFall17V2Iso_WP80=True, cutBased=4)
JET = dict(pt=40.0, eta=0.0, phi=0.0, mass=5.0, jetId=6, muEF=0.1, neEmEF=0.1)

eta = st.floats(-2.6, 2.6)
phi = st.floats(-3.1, 3.1)
charge = st.sampled_from([-1, 1])


@st.composite
def noise_muon(draw) -> dict:
    return MUON | dict(pt=draw(st.floats(3, 80)), eta=draw(eta), phi=draw(phi), charge=draw(charge), tightId=draw(st.booleans()),
                       pfRelIso04_all=draw(st.floats(0, 1)), dxy=draw(st.floats(-0.1, 0.1)))


@st.composite
def noise_electron(draw) -> dict:
    return ELECTRON | dict(pt=draw(st.floats(5, 80)), eta=draw(eta), phi=draw(phi), charge=draw(charge),
                           mvaFall17V2Iso_WP80=draw(st.booleans()), cutBased=draw(st.integers(0, 4)))


@st.composite
def noise_jet(draw) -> dict:
    return JET | dict(pt=draw(st.floats(10, 150)), eta=draw(st.floats(-3, 3)), phi=draw(phi), jetId=draw(st.sampled_from([0, 2, 6])),
                      muEF=draw(st.floats(0, 0.8)), neEmEF=draw(st.floats(0, 0.8)))


def wrap_phi(value: float) -> float:
    return (value + math.pi) % (2 * math.pi) - math.pi


@st.composite
def good_jet(draw) -> dict:
    return JET | dict(pt=draw(st.floats(25, 150)), eta=draw(st.floats(-2.3, 2.3)), phi=draw(phi))


@st.composite
def z_event(draw) -> dict:
    """Two same-flavour leptons of equal pt p at dphi = pi - 0.5: m_ll = 1.94 p and pT_ll = 0.49 p."""
    p, lepton_eta, lepton_phi = draw(st.floats(40, 54)), draw(st.floats(-2, 2)), draw(phi)
    template = draw(st.sampled_from([MUON, ELECTRON]))
    first = template | dict(pt=p, eta=lepton_eta, phi=lepton_phi, charge=-1)
    second = template | dict(pt=p, eta=lepton_eta, phi=wrap_phi(lepton_phi + math.pi - 0.5), charge=draw(charge))
    key = "muons" if template is MUON else "electrons"
    return {key: [first, second], "jets": draw(st.lists(good_jet(), min_size=1, max_size=3))}


@st.composite
def soft_muon_event(draw) -> dict:
    """An isolated lepton, MET opposite to it, and a jet with a displaced non-isolated muon inside."""
    template = draw(st.sampled_from([MUON, ELECTRON]))
    lepton_phi = draw(phi)
    lepton = template | dict(pt=draw(st.floats(36, 70)), eta=draw(st.floats(-2, 2)), phi=lepton_phi, charge=draw(charge))
    jet_pt, jet_eta, jet_phi = draw(st.floats(30, 120)), draw(st.floats(-2, 2)), wrap_phi(lepton_phi + 2.0)
    soft = MUON | dict(pt=draw(st.floats(3, 10)), eta=jet_eta + 0.1, phi=jet_phi, charge=draw(charge), pfRelIso04_all=0.6, dxy=0.05)
    jets = [JET | dict(pt=jet_pt, eta=jet_eta, phi=jet_phi)] + draw(st.lists(good_jet(), max_size=4))
    key = "muons" if template is MUON else "electrons"
    event = {key: [lepton], "jets": jets, "met": (draw(st.floats(40, 120)), wrap_phi(lepton_phi + math.pi))}
    event["muons"] = event.get("muons", []) + [soft]
    return event


@st.composite
def emu_event(draw) -> dict:
    muon = MUON | dict(pt=draw(st.floats(26, 70)), eta=draw(st.floats(-2, 2)), phi=draw(phi), charge=draw(charge))
    electron = ELECTRON | dict(pt=draw(st.floats(26, 70)), eta=draw(st.floats(-2, 2)), phi=wrap_phi(muon["phi"] + 2.5), charge=draw(charge))
    return {"muons": [muon], "electrons": [electron], "jets": draw(st.lists(good_jet(), min_size=1, max_size=4))}


@st.composite
def noise_event(draw) -> dict:
    return {"muons": draw(st.lists(noise_muon(), max_size=2)), "electrons": draw(st.lists(noise_electron(), max_size=2)),
            "jets": draw(st.lists(noise_jet(), max_size=4)), "met": (draw(st.floats(0, 100)), draw(phi))}


@st.composite
def any_event(draw) -> dict:
    """A Z, W-plus-soft-muon, emu or noise topology, with extra random objects mixed in."""
    event = draw(st.one_of(z_event(), soft_muon_event(), emu_event(), noise_event()))
    extra = draw(noise_event())
    for key in ("muons", "electrons", "jets"):
        event[key] = event.get(key, []) + draw(st.lists(st.sampled_from(extra[key]), max_size=1) if extra[key] else st.just([]))
    event.setdefault("met", extra["met"])
    return event


def collection(rows: list[list[dict]], defaults: dict, name: str) -> ak.Array:
    flat = [obj for row in rows for obj in row]
    columns = {key: np.asarray([obj[key] for obj in flat], dtype=np.asarray(value).dtype) for key, value in defaults.items()}
    zipped = ak.zip(columns, with_name=name, behavior=candidate.behavior)
    return ak.unflatten(zipped, np.asarray([len(row) for row in rows], dtype=np.int64))


@st.composite
def random_events(draw) -> ak.Array:
    """1-10 events of mixed topologies; each trigger path fires at random."""
    events = draw(st.lists(any_event(), min_size=1, max_size=10))
    n = len(events)
    hlt = {name: np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool) for name in TRIGGERS}
    met = {"pt": np.array([e["met"][0] for e in events]), "phi": np.array([e["met"][1] for e in events])}
    return ak.zip(
        {
            "Muon": collection([e.get("muons", []) for e in events], MUON, "PtEtaPhiMCandidate"),
            "Electron": collection([e.get("electrons", []) for e in events], ELECTRON, "PtEtaPhiMCandidate"),
            "Jet": collection([e.get("jets", []) for e in events], JET, "PtEtaPhiMLorentzVector"),
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
    target(float(result.n_selected))  # steer the search towards events the selection keeps
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
    # Shapes that differ by more than rounding give a JSD well above the float64 noise of about 1e-16.
    clearly_different = not np.allclose(p / p.sum(), q / q.sum(), rtol=1e-6, atol=1e-9)
    if clearly_different:
        assert jsd(p, q) > 0.0


def test_jsd_disjoint_is_ln2():
    assert jsd(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(math.log(2.0))
