"""Selections on small hand-built events whose results are worked out by hand.

Leptons and jets are massless-looking candidates at chosen (pt, eta, phi); the pair mass
of two leptons is m^2 = 2 pt1 pt2 (cosh deta - cos dphi), so for example two 50 GeV
muons at deta = 0, dphi = 2.5 give m = 94.9 GeV and pT_ll = 31.5 GeV.
"""

from __future__ import annotations

import logging
import math

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents.methods import candidate

from advcalib.selections import MissingInputError, default_selections, make_selection
from advcalib.selections.cuts import CUT_TABLES, Cut, CutTable

MUON = dict(pt=30.0, eta=0.0, phi=0.0, mass=0.0, charge=-1, tightId=True, pfRelIso04_all=0.05, dxy=0.0, dxyErr=0.01)
ELECTRON = dict(pt=30.0, eta=0.0, phi=0.0, mass=0.0, charge=-1, mvaFall17V2Iso_WP80=True, cutBased=4)
JET = dict(pt=40.0, eta=1.5, phi=-1.5, mass=0.0, jetId=6, muEF=0.1, neEmEF=0.1, hadronFlavour=0)
DIMUON = ("Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8", "Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ")
ALL_TRIGGERS = DIMUON + (
    "Ele23_Ele12_CaloIdL_TrackIdL_IsoVL_DZ",
    "IsoMu24",
    "IsoMu27",
    "Ele32_WPTight_Gsf",
    "Mu23_TrkIsoVVL_Ele12_CaloIdL_TrackIdL_IsoVL_DZ",
)


def collection(rows: list[list[dict]], defaults: dict, name: str = "PtEtaPhiMCandidate") -> ak.Array:
    """Jagged collection of ``name`` records from per-event lists of field overrides."""
    flat = [defaults | obj for row in rows for obj in row]
    columns = {key: np.asarray([obj[key] for obj in flat], dtype=np.asarray(value).dtype) for key, value in defaults.items()}
    zipped = ak.zip(columns, with_name=name, behavior=candidate.behavior)
    return ak.unflatten(zipped, np.asarray([len(row) for row in rows], dtype=np.int64))


def make_events(
    *,
    muons: list[list[dict]],
    jets: list[list[dict]],
    electrons: list[list[dict]] | None = None,
    met: list[tuple[float, float]] | None = None,
    fired: list[bool] | None = None,
    triggers: tuple[str, ...] = ALL_TRIGGERS,
) -> ak.Array:
    n = len(muons)
    electrons = electrons if electrons is not None else [[] for _ in range(n)]
    met = met if met is not None else [(0.0, 0.0)] * n
    fired = fired if fired is not None else [True] * n
    hlt = ak.zip({name: np.asarray(fired, dtype=bool) for name in triggers})
    met_record = ak.zip({"pt": np.array([m[0] for m in met]), "phi": np.array([m[1] for m in met])})
    return ak.zip(
        {
            "Muon": collection(muons, MUON),
            "Electron": collection(electrons, ELECTRON),
            "Jet": collection(jets, JET, "PtEtaPhiMLorentzVector"),
            "HLT": hlt,
            "MET": met_record,
        },
        depth_limit=1,
        behavior=candidate.behavior,
    )


def z_muons(*, charge2: int = 1, dphi: float = 2.5, pt: float = 50.0) -> list[dict]:
    return [dict(pt=pt, phi=0.0, charge=-1), dict(pt=pt, phi=dphi, charge=charge2)]


# --- cut tables and selection objects -------------------------------------------------------


def test_identity_from_name_and_cuts():
    first, second = make_selection("light", "mm"), make_selection("light", "mm")
    assert first.identity == second.identity
    assert first.identity.startswith("light/mm/")
    assert make_selection("light", "mm", ptll_min=20.0).identity != first.identity
    assert make_selection("light", "ee").identity != first.identity


def test_unknown_cut_override_rejected():
    with pytest.raises(KeyError, match="ptll_minimum"):
        make_selection("light", "mm", ptll_minimum=20.0)


def test_duplicate_cut_names_rejected():
    with pytest.raises(ValueError, match="pt"):
        CutTable((Cut("pt", 1, "a"), Cut("pt", 2, "b")))


def test_unknown_channel_rejected():
    with pytest.raises(KeyError, match="channels m, e"):
        make_selection("charm", "mm")


def test_every_region_has_a_table():
    identities = {s.identity for s in default_selections()}
    assert len(identities) == len(CUT_TABLES) == 7


# --- light: Z(mumu) + jet ---------------------------------------------------------------------


def test_pair_mass_of_the_reference_event():
    events = make_events(muons=[z_muons()], jets=[[{}]])
    pair = events.Muon[:, 0] + events.Muon[:, 1]
    assert math.isclose(pair.mass[0], math.sqrt(2 * 50 * 50 * (1 - math.cos(2.5))), rel_tol=1e-6)
    assert 81 < pair.mass[0] < 101
    assert pair.pt[0] > 15


def test_light_mm_cutflow_and_probe():
    events = make_events(
        muons=[
            z_muons(),                              # 0 passes
            z_muons(charge2=-1),                    # 1 same charge
            z_muons(),                              # 2 trigger not fired
            z_muons(dphi=1.5),                      # 3 m_ll = 68 GeV
            z_muons(pt=18.0),                       # 4 leading muon below 20 GeV
            z_muons(),                              # 5 only jet fails jet ID
            z_muons(),                              # 6 leading jet on top of a muon
            z_muons() + [dict(pt=20.0, eta=1.5, phi=-1.5, pfRelIso04_all=0.5)],  # 7 non-isolated muon in jet
            [dict(pt=50.0, phi=0.0, charge=-1), dict(pt=50.0, phi=2.5, charge=1, tightId=False)],  # 8 one tight
        ],
        jets=[
            [{}], [{}], [{}], [{}], [{}],
            [dict(jetId=2)],
            [dict(pt=60.0, eta=0.1, phi=2.5), dict(pt=30.0)],
            [{}],
            [{}],
        ],
        fired=[True, True, False, True, True, True, True, True, True],
    )
    result = make_selection("light", "mm").apply(events)
    assert result.mask.tolist() == [True, False, False, False, False, False, True, True, False]
    assert result.probe.tolist() == [0, -1, -1, -1, -1, -1, 1, 0, -1]
    assert result.osss[result.mask].tolist() == [1, 1, 1]
    assert result.cutflow == {
        "all": 9, "trigger": 8, "two_leptons": 6, "opposite_charge": 5,
        "mll_window": 4, "ptll": 4, "jet": 3,
    }


def test_light_jet_near_second_lepton_removed():
    # The jet sits on the subleading muon only: cleaning needs DeltaR > 0.4 from both.
    events = make_events(muons=[z_muons()], jets=[[dict(eta=0.0, phi=2.45)]])
    assert not make_selection("light", "mm").apply(events).mask[0]


def test_light_ptll_cut():
    # Back to back at equal pt: m_ll = 90 GeV but pT_ll = 0.
    events = make_events(muons=[[dict(pt=45.0, charge=-1), dict(pt=45.0, phi=math.pi, charge=1)]], jets=[[{}]])
    result = make_selection("light", "mm").apply(events)
    assert result.cutflow["mll_window"] == 1
    assert result.cutflow["ptll"] == 0


def test_light_ee_channel():
    electrons = [
        [dict(pt=50.0, charge=-1), dict(pt=50.0, phi=2.5, charge=1)],
        [dict(pt=50.0, charge=-1), dict(pt=50.0, phi=2.5, charge=1, mvaFall17V2Iso_WP80=False, cutBased=2)],
        [dict(pt=50.0, charge=-1), dict(pt=50.0, phi=2.5, charge=1, mvaFall17V2Iso_WP80=False, cutBased=4)],
        [dict(pt=25.0, charge=-1), dict(pt=25.0, phi=2.5, charge=1)],
    ]
    events = make_events(muons=[[], [], [], []], electrons=electrons, jets=[[{}]] * 4)
    result = make_selection("light", "ee").apply(events)
    # event 1 fails both IDs, event 2 passes by tight cut-based ID, event 3 has no lepton above 27 GeV
    assert result.mask.tolist() == [True, False, True, False]


def test_missing_trigger_falls_back(caplog):
    events = make_events(muons=[z_muons()], jets=[[{}]], triggers=("Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ",))
    with caplog.at_level(logging.WARNING):
        result = make_selection("light", "mm").apply(events)
    assert result.mask.tolist() == [True]
    assert "HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8" in caplog.text


def test_no_trigger_raises():
    events = make_events(muons=[z_muons()], jets=[[{}]], triggers=("IsoMu24",))
    with pytest.raises(MissingInputError, match="HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8"):
        make_selection("light", "mm").apply(events)


# --- charm: W+c with a soft muon --------------------------------------------------------------

LEPTON = dict(pt=40.0, eta=0.0, phi=0.0, charge=-1)
CHARM_JET = dict(pt=40.0, eta=1.0, phi=2.0)
SOFT = dict(pt=8.0, eta=1.05, phi=2.0, charge=1, pfRelIso04_all=0.5, dxy=0.05, dxyErr=0.01)
MET = (40.0, math.pi)  # mT = sqrt(2 * 40 * 40 * 2) = 80 GeV


def charm_event(*, lepton: dict | None = None, soft: dict | None = None, jets: list[dict] | None = None,
                extra_muons: list[dict] | None = None, met: tuple[float, float] = MET) -> dict:
    muons = [LEPTON | (lepton or {}), SOFT | (soft or {})] + (extra_muons or [])
    return dict(muons=muons, jets=jets if jets is not None else [dict(CHARM_JET)], met=met)


def build(cases: list[dict], **kwargs) -> ak.Array:
    return make_events(
        muons=[c["muons"] for c in cases],
        jets=[c["jets"] for c in cases],
        met=[c["met"] for c in cases],
        **kwargs,
    )


def test_charm_m_cuts():
    cases = [
        charm_event(),                                             # 0 OS, passes
        charm_event(soft=dict(charge=-1)),                         # 1 SS, passes
        charm_event(soft=dict(pfRelIso04_all=0.1)),                # 2 soft muon isolated
        charm_event(soft=dict(dxy=0.005)),                         # 3 |dxy/dxyErr| = 0.5
        charm_event(soft=dict(pt=20.0)),                           # 4 pt ratio 0.5
        charm_event(jets=[CHARM_JET | dict(muEF=0.5, neEmEF=0.3)]),  # 5 muEF + neEmEF = 0.8
        charm_event(met=(10.0, math.pi)),                          # 6 mT = 40 GeV
        charm_event(extra_muons=[dict(pt=20.0, eta=-1.0, phi=-2.0)]),  # 7 second isolated muon
        charm_event(jets=[dict(CHARM_JET)] + [dict(pt=30.0, eta=-1.0, phi=-1.0 - 0.6 * i) for i in range(3)]),  # 8 4 jets
        charm_event(jets=[dict(pt=15.0, eta=-1.0, phi=-1.0), dict(CHARM_JET)]),  # 9 probe is Jet[1]
        charm_event(soft=dict(eta=1.6)),                           # 10 DeltaR(soft mu, jet) = 0.6
    ]
    result = make_selection("charm", "m").apply(build(cases))
    assert result.mask.tolist() == [True, True, False, False, False, False, False, False, False, True, False]
    assert result.osss.tolist() == [1, -1, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert result.probe[[0, 1, 9]].tolist() == [0, 0, 1]
    assert result.cutflow == {
        "all": 11, "trigger": 11, "one_lepton": 11, "lepton_veto": 10, "jet_multiplicity": 9,
        "soft_muon_in_jet": 4, "mt": 3, "lepton_soft_muon_mass": 3,
    }


def test_charm_lepton_soft_muon_mass_veto():
    # pt 40 and 20 at deta = 2.2, dphi = pi: m = sqrt(1600 (cosh 2.2 + 1)) = 94.4 GeV, inside 80-100.
    jet = dict(pt=60.0, eta=2.2, phi=math.pi)
    soft = dict(pt=20.0, eta=2.2, phi=math.pi)
    cases = [charm_event(jets=[jet], soft=soft, met=(60.0, math.pi / 2))]
    events = build(cases)
    mass = (events.Muon[:, 0] + events.Muon[:, 1]).mass[0]
    assert 80 < mass < 100
    result = make_selection("charm", "m").apply(events)
    assert result.cutflow["mt"] == 1
    assert result.cutflow["lepton_soft_muon_mass"] == 0


def test_charm_e_osss_from_electron_charge():
    electrons = [[dict(pt=40.0, charge=1)], [dict(pt=40.0, charge=-1)], [dict(pt=30.0, charge=1)]]
    muons = [[SOFT | dict(charge=-1)], [SOFT | dict(charge=-1)], [SOFT | dict(charge=-1)]]
    events = make_events(muons=muons, electrons=electrons, jets=[[dict(CHARM_JET)]] * 3, met=[MET] * 3)
    result = make_selection("charm", "e").apply(events)
    # electron below 34 GeV in event 2; OS: q(e) = +1, q(mu) = -1 -> osss = +1
    assert result.mask.tolist() == [True, True, False]
    assert result.osss.tolist() == [1, -1, 0]
    assert "lepton_soft_muon_mass" not in result.cutflow


def test_charm_soft_muon_counts_not_as_isolated_lepton():
    # A non-isolated soft muon above the veto threshold must not trigger the lepton veto.
    events = build([charm_event(soft=dict(pt=15.5, pfRelIso04_all=0.3))], )
    result = make_selection("charm", "m").apply(events)
    assert result.cutflow["lepton_veto"] == 1


# --- bottom -------------------------------------------------------------------------------


def test_bottom_m_needs_four_jets_and_no_mt():
    four = [dict(CHARM_JET)] + [dict(pt=30.0, eta=-1.0, phi=-1.0 - 0.6 * i) for i in range(3)]
    cases = [charm_event(jets=four, met=(0.0, 0.0)), charm_event(met=(0.0, 0.0))]
    result = make_selection("bottom", "m").apply(build(cases))
    assert result.mask.tolist() == [True, False]
    assert "mt" not in result.cutflow
    assert result.probe[0] == 0


def test_bottom_emu():
    muons = [[dict(pt=30.0, charge=-1)], [dict(pt=30.0, charge=1)], [dict(pt=30.0, charge=-1)], [dict(pt=30.0, charge=-1)]]
    electrons = [[dict(pt=30.0, eta=0.5, phi=2.0, charge=1)]] * 4
    jets = [
        [dict(pt=35.0, eta=-1.0, phi=-2.0), dict(pt=80.0, eta=1.5, phi=-1.0)],
        [dict(pt=35.0, eta=-1.0, phi=-2.0), dict(pt=80.0, eta=1.5, phi=-1.0)],
        [dict(pt=35.0, eta=-1.0, phi=-2.0)],
        [dict(pt=35.0, eta=-1.0, phi=-2.0), dict(pt=80.0, eta=0.5, phi=2.1)],  # second jet on the electron
    ]
    events = make_events(muons=muons, electrons=electrons, jets=jets)
    result = make_selection("bottom", "emu").apply(events)
    assert result.mask.tolist() == [True, False, False, False]
    assert result.probe[0] == 1  # the leading jet, second in the collection
    assert result.osss[0] == 1
    assert result.cutflow == {"all": 4, "trigger": 4, "one_muon": 4, "one_electron": 4, "opposite_charge": 3, "jet_multiplicity": 1}


def test_empty_chunk():
    events = make_events(muons=[], jets=[])
    for selection in default_selections():
        result = selection.apply(events)
        assert result.mask.shape == (0,)
        assert result.cutflow["all"] == 0
