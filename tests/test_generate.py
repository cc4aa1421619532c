"""Tests of the synthetic PFNano generator: file layout, physics content, truth, presets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from advcalib.generate import Preset, generate, load_preset
from advcalib.generate import kinematics as kin
from advcalib.generate.mismodeling import Mismodeling
from advcalib.generate.table import segment_rank

#: Branches advcalib reads from PFNano files (selections, input building, stored taggers).
READ_BRANCHES = (
    "run", "luminosityBlock", "event", "fixedGridRhoFastjetAll",
    "PV_npvs", "PV_npvsGood", "PV_x", "PV_y", "PV_z",
    "MET_pt", "MET_phi", "PuppiMET_pt", "PuppiMET_phi",
    "Flag_goodVertices", "Flag_METFilters",
    "HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8", "HLT_IsoMu24", "HLT_IsoMu27", "HLT_Ele32_WPTight_Gsf",
    "HLT_Ele23_Ele12_CaloIdL_TrackIdL_IsoVL_DZ", "HLT_Mu23_TrkIsoVVL_Ele12_CaloIdL_TrackIdL_IsoVL_DZ",
    "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_rawFactor", "Jet_jetId", "Jet_muEF", "Jet_neEmEF", "Jet_chEmEF",
    "Jet_muonIdx1", "Jet_muonIdx2", "Jet_electronIdx1", "Jet_electronIdx2", "Jet_nConstituents",
    *(f"Jet_btagDeepFlav{k}" for k in ("B", "CvL", "CvB", "QG", "B_b", "B_bb", "B_lepb", "UDS", "G", "C")),
    "JetPFCands_pt", "JetPFCands_btagEtaRel", "JetPFCands_btagPtRatio", "JetPFCands_btagPParRatio",
    "JetPFCands_btagSip3dVal", "JetPFCands_btagSip3dSig", "JetPFCands_btagJetDistVal", "JetPFCands_pFCandsIdx",
    "JetPFCands_jetIdx",
    *(f"PFCands_{k}" for k in ("pt", "eta", "phi", "mass", "charge", "pdgId", "d0", "d0Err", "dz", "dzErr",
                               "puppiWeight", "puppiWeightNoLep", "trkChi2", "vtxChi2", "lostInnerHits",
                               "pvAssocQuality", "trkQuality")),
    *(f"JetSVs_{k}" for k in ("mass", "pt", "ntracks", "chi2", "normchi2", "dxy", "dxysig", "d3d", "d3dsig",
                              "costhetasvpv", "phirel", "ptrel", "deltaR", "enration", "jetIdx", "sVIdx")),
    *(f"SV_{k}" for k in ("pt", "eta", "phi", "mass", "dlen", "dlenSig", "dxy", "dxySig", "pAngle", "chi2", "ndof",
                          "x", "y", "z", "ntracks")),
    *(f"Muon_{k}" for k in ("pt", "eta", "phi", "mass", "charge", "tightId", "pfRelIso04_all", "dxy", "dxyErr", "dz",
                            "dzErr", "jetIdx")),
    *(f"Electron_{k}" for k in ("pt", "eta", "phi", "mass", "charge", "mvaFall17V2Iso_WP80", "cutBased",
                                "pfRelIso03_all", "jetIdx")),
)
MC_ONLY_BRANCHES = ("Jet_hadronFlavour", "Jet_partonFlavour", "Jet_nBHadrons", "Jet_nCHadrons", "genWeight")
#: coffea warns about these generator-level indices for every file without generator content,
#: real collision data included.
GENERATOR_CROSSREF_WARNINGS = ("GenFatJetSVs_sVIdx", "GenJetSVs_sVIdx", "SubJet_subGenJetAK8Idx")


def small_preset(datasets: list[dict], *, lumi: float = 1.0, mismodeling: Mismodeling | None = None, closure: bool = False) -> Preset:
    return Preset.model_validate({"name": "test", "lumi": lumi, "chunk_size": 4000, "closure": closure,
                                  "mismodeling": (mismodeling or Mismodeling()).model_dump(), "datasets": datasets})


def read_events(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A small mixture with simulation and pseudo-data of every calibration process."""
    out = tmp_path_factory.mktemp("generated")
    preset = small_preset([
        {"name": "dy", "process": "dy", "role": "calibration", "events": 1500, "data": True},
        {"name": "wjets", "process": "wjets", "role": "calibration", "events": 30000, "data": True, "filter": "soft_muon"},
        {"name": "wcharm", "process": "wcharm", "role": "calibration", "events": 12000, "data": True, "filter": "soft_muon"},
        {"name": "ttbar_semilep", "process": "ttbar_semilep", "role": "calibration", "events": 2500, "data": True},
        {"name": "ttbar_dilep", "process": "ttbar_dilep", "role": "calibration", "events": 400},
        {"name": "qcd_train", "process": "qcd", "role": "training", "events": 600},
    ], lumi=1.5, mismodeling=load_preset("demo").mismodeling)
    generate(preset, out, seed=7)
    return out


# -- file layout ---------------------------------------------------------------------------------


def test_read_branches_present(sample):
    tree = uproot.open(sample / "ttbar_semilep.root")["Events"]
    missing = [name for name in READ_BRANCHES + MC_ONLY_BRANCHES if name not in tree]
    assert missing == []


def test_every_cut_table_trigger_written(sample):
    from advcalib.selections.cuts import CUT_TABLES

    expected = {name for table in CUT_TABLES.values() for name in table["triggers"]}
    for file in ("dy.root", "data_dy.root", "ttbar_semilep.root"):
        tree = uproot.open(sample / file)["Events"]
        missing = sorted(name for name in expected if name not in tree)
        assert missing == [], file


def test_trigger_family_fires_together(sample):
    from advcalib.selections.cuts import CUT_TABLES

    tree = uproot.open(sample / "ttbar_semilep.root")["Events"]
    for key, table in CUT_TABLES.items():
        names = table["triggers"]
        bits = [tree[name].array(library="np") for name in names]
        assert bits[0].dtype == np.bool_, key
        for name, other in zip(names[1:], bits[1:]):
            np.testing.assert_array_equal(other, bits[0], err_msg=f"{key}: {name}")
    assert tree["HLT_IsoMu24"].array(library="np").sum() > 0


def test_branch_types_match_real_file(sample, real_pfnano):
    ours = uproot.open(sample / "ttbar_semilep.root")["Events"]
    real = uproot.open(real_pfnano)["Events"]
    shared = [b for b in ours.keys() if b in real and not b.startswith("n")]
    assert len(shared) > 150
    mismatched = {}
    for name in shared:
        mine, theirs = (t[name].interpretation for t in (ours, real))
        mine_dtype = getattr(mine, "content", mine).to_dtype
        their_dtype = getattr(theirs, "content", theirs).to_dtype
        if mine_dtype != their_dtype:
            mismatched[name] = (str(mine_dtype), str(their_dtype))
    assert mismatched == {}


def test_all_tagging_branches_of_real_file(sample, real_pfnano):
    ours = set(uproot.open(sample / "ttbar_semilep.root")["Events"].keys())
    real = uproot.open(real_pfnano)["Events"].keys()
    prefixes = ("Jet_DeepCSV_", "Jet_btagDeepFlav", "JetPFCands_", "JetSVs_", "PFCands_", "SV_")
    missing = [name for name in real if name.startswith(prefixes) and name not in ours]
    assert missing == []


def test_simulation_reads_without_warnings(sample):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = read_events(sample / "dy.root")
    assert len(events) > 0


def test_pseudo_data_warnings_only_generator_level(sample):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_events(sample / "data_dy.root")
    messages = [str(w.message) for w in caught]
    unexpected = [m for m in messages if not any(name in m for name in GENERATOR_CROSSREF_WARNINGS)]
    assert unexpected == []


def check_cross_references(events) -> None:
    """Index consistency that advcalib relies on, identical for real and generated files."""
    jets = events.Jet
    n_constituents = ak.num(jets.constituents.pf, axis=2)
    assert ak.all(n_constituents == jets.nConstituents)
    assert ak.all(ak.num(events.JetPFCands) == ak.sum(jets.nConstituents, axis=1))
    assert ak.all(jets.constituents.pf.pt == jets.constituents.pf.pt)  # resolves the nested index
    assert ak.all(events.JetPFCands.pf.pt == events.JetPFCands.pt)
    assert ak.all((events.JetPFCands.jetIdx >= 0) & (events.JetPFCands.jetIdx < ak.num(jets)))
    # -1 marks a jet vertex without an entry in SV (it happens in the real file).
    assert ak.all((events.JetSVs.sVIdx >= -1) & (events.JetSVs.sVIdx < ak.num(events.SV)))
    assert ak.all((events.JetSVs.jetIdx >= 0) & (events.JetSVs.jetIdx < ak.num(jets)))
    muons = events.Muon
    assert ak.all(muons.jetIdx < ak.num(jets))
    jet_muons = jets.matched_muons
    assert ak.all(jet_muons.jetIdx == ak.local_index(jets, axis=1))


def test_cross_references_real_file(real_pfnano):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = read_events(real_pfnano)
    check_cross_references(events)


@pytest.mark.parametrize("name", ["ttbar_semilep", "data_wcharm", "qcd_train"])
def test_cross_references_generated(sample, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = read_events(sample / f"{name}.root")
    check_cross_references(events)
    assert ak.all(events.JetSVs.sVIdx >= 0)
    assert ak.all(events.JetSVs.sv.mass == events.JetSVs.mass)
    assert ak.all(events.JetSVs.jet.pt > 0)
    soft = events.Muon[events.Muon.jetIdx >= 0]
    jet = events.Jet[ak.where(soft.jetIdx >= 0, soft.jetIdx, 0)]
    assert ak.all(soft.delta_r(jet) < 0.4)


def test_jets_sorted_by_pt(sample):
    jets = uproot.open(sample / "dy.root")["Events"]["Jet_pt"].array()
    assert ak.all(jets[:, 1:] <= jets[:, :-1])


# -- physics content -----------------------------------------------------------------------------


def flat(array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array))


def test_b_jets_displaced_and_heavier(sample):
    tree = uproot.open(sample / "ttbar_semilep.root")["Events"]
    arrays = tree.arrays(["Jet_hadronFlavour", "Jet_DeepCSV_trackSip2dSig_1", "Jet_DeepCSV_vertexMass",
                          "Jet_DeepCSV_vertexCategory"])
    flavour = flat(arrays.Jet_hadronFlavour)
    sig = flat(arrays.Jet_DeepCSV_trackSip2dSig_1)
    mass = flat(arrays.Jet_DeepCSV_vertexMass)
    assert np.median(sig[flavour == 5]) > 3 * max(np.median(sig[flavour == 0]), 0.5)
    with_vertex = flat(arrays.Jet_DeepCSV_vertexCategory) == 0
    assert np.mean(mass[(flavour == 5) & with_vertex]) > np.mean(mass[(flavour == 0) & with_vertex]) + 1.0
    assert np.mean(with_vertex[flavour == 5]) > 0.5
    assert 0.005 < np.mean(with_vertex[flavour == 0]) < 0.15


def test_gluon_jets_have_more_constituents(sample):
    arrays = uproot.open(sample / "qcd_train.root")["Events"].arrays(["Jet_partonFlavour", "Jet_nConstituents", "Jet_pt"])
    parton = np.abs(flat(arrays.Jet_partonFlavour))
    n = flat(arrays.Jet_nConstituents)
    pt = flat(arrays.Jet_pt)
    window = (pt > 30) & (pt < 60)
    assert np.mean(n[(parton == 21) & window]) > 1.1 * np.mean(n[(parton < 4) & window])


def test_stored_tagger_learnable_not_perfect(sample):
    arrays = uproot.open(sample / "ttbar_semilep.root")["Events"].arrays(["Jet_hadronFlavour", "Jet_btagDeepFlavB"])
    flavour = flat(arrays.Jet_hadronFlavour)
    score = flat(arrays.Jet_btagDeepFlavB)
    b, light = score[flavour == 5], score[flavour == 0]
    auc = np.mean(b[:, None] > light[None, :2000])
    assert 0.8 < auc < 0.99


def test_soft_muons_pass_charm_requirements(sample):
    events = uproot.open(sample / "wcharm.root")["Events"].arrays(filter_name="Muon_*")
    soft = events[events.Muon_jetIdx >= 0]
    assert ak.sum(ak.num(soft.Muon_pt)) > 100
    assert np.mean(flat(soft.Muon_tightId)) > 0.8
    assert np.mean(flat(soft.Muon_pfRelIso04_all) > 0.2) > 0.9
    # About 72 % of the soft muons have |dxy| above 1 sigma, so the bound leaves 3 standard errors for a few hundred.
    assert np.mean(np.abs(flat(soft.Muon_dxy / soft.Muon_dxyErr)) > 1) > 0.65


def osss_counts(path: Path) -> tuple[int, int]:
    """Events with one isolated W lepton and a soft muon in a jet, split by -q(lep) * q(soft muon)."""
    arrays = uproot.open(path)["Events"].arrays(filter_name=["Muon_*", "Electron_*"])
    muon_lep = (arrays.Muon_jetIdx < 0) & arrays.Muon_tightId & (arrays.Muon_pfRelIso04_all < 0.15) & (arrays.Muon_pt > 30)
    electron_lep = (arrays.Electron_jetIdx < 0) & (arrays.Electron_pt > 35) & arrays.Electron_mvaFall17V2Iso_WP80
    charges = ak.concatenate([arrays.Muon_charge[muon_lep], arrays.Electron_charge[electron_lep]], axis=1)
    soft = (arrays.Muon_jetIdx >= 0) & arrays.Muon_tightId & (arrays.Muon_pfRelIso04_all > 0.2) & (arrays.Muon_pt < 25)
    soft_charge = ak.firsts(arrays.Muon_charge[soft])
    ok = (ak.num(charges) == 1) & ~ak.is_none(soft_charge)
    osss = ak.to_numpy(-ak.firsts(charges[ok]) * soft_charge[ok])
    return int(np.sum(osss == 1)), int(np.sum(osss == -1))


def test_wcharm_opposite_sign_excess(sample):
    os_, ss = osss_counts(sample / "wcharm.root")
    assert os_ + ss > 100
    assert os_ > 0.85 * (os_ + ss)


def test_wjets_opposite_sign_symmetric(sample):
    os_, ss = osss_counts(sample / "wjets.root")
    assert os_ + ss > 50
    assert abs(os_ - ss) < 4 * np.sqrt(os_ + ss)


def test_z_line_shape(sample):
    arrays = uproot.open(sample / "dy.root")["Events"].arrays(filter_name="Muon_*")
    prompt = arrays[(arrays.Muon_jetIdx < 0) & (arrays.Muon_pt > 20)]
    pairs = ak.combinations(ak.zip({"pt": prompt.Muon_pt, "eta": prompt.Muon_eta, "phi": prompt.Muon_phi}), 2)
    pairs = pairs[ak.num(pairs) == 1]
    a, b = pairs["0"][:, 0], pairs["1"][:, 0]
    mass = np.sqrt(2 * a.pt * b.pt * (np.cosh(a.eta - b.eta) - np.cos(a.phi - b.phi)))
    mass = ak.to_numpy(mass)
    assert abs(np.median(mass) - kin.Z_MASS) < 2.0
    assert np.mean(np.abs(mass - kin.Z_MASS) < 10) > 0.7


# -- truth, mismodeling, fileset -----------------------------------------------------------------


def test_data_has_no_truth(sample):
    tree = uproot.open(sample / "data_ttbar_semilep.root")["Events"]
    truth_like = [b for b in tree.keys() if b in MC_ONLY_BRANCHES or b.lstrip("n").startswith("Gen") or "Flavour" in b]
    assert truth_like == []


def test_truth_sidecar_aligned(sample):
    data = uproot.open(sample / "data_ttbar_semilep.root")["Events"]["Jet_pt"].array()
    truth = uproot.open(sample / "data_ttbar_semilep_truth.root")["Truth"]["Jet_hadronFlavour"].array()
    assert ak.all(ak.num(truth) == ak.num(data))
    assert set(np.unique(flat(truth))) <= {0, 4, 5}
    assert np.mean(flat(truth) == 5) > 0.2


def test_fileset_metadata(sample):
    fileset = json.loads((sample / "fileset.json").read_text())
    assert set(fileset) == {"dy", "wjets", "wcharm", "ttbar_semilep", "ttbar_dilep", "qcd_train",
                            "data_dy", "data_wjets", "data_wcharm", "data_ttbar_semilep"}
    wjets = fileset["wjets"]["metadata"]
    assert wjets["is_data"] is False
    assert wjets["role"] == "calibration"
    assert wjets["xsec"] > 0
    assert wjets["sumw"] == 30000.0
    assert fileset["qcd_train"]["metadata"]["role"] == "training"
    data = fileset["data_wcharm"]["metadata"]
    assert data["is_data"] is True
    assert data["lumi"] == 1.5
    for data_file, sidecar in data["truth"].items():
        assert (sample / data_file).exists()
        assert (sample / sidecar).exists()
        assert data_file in fileset["data_wcharm"]["files"]


def test_fileset_loads_with_advcalib(sample):
    fileset_module = pytest.importorskip("advcalib.fileset")
    datasets = fileset_module.load_fileset(sample / "fileset.json")
    assert datasets["data_dy"].metadata.is_data


def test_mismodeling_json_records_knobs(sample):
    recorded = json.loads((sample / "mismodeling.json").read_text())
    assert recorded["closure"] is False
    assert recorded["knobs"] == load_preset("demo").mismodeling.model_dump()


def mean_b_vertex_mass(path: Path, flavour) -> float:
    """Mean mass of the leading reconstructed secondary vertex (category 0) in b jets."""
    arrays = uproot.open(path)["Events"].arrays(["Jet_DeepCSV_vertexMass", "Jet_DeepCSV_vertexCategory"])
    mass, category, flavours = flat(arrays.Jet_DeepCSV_vertexMass), flat(arrays.Jet_DeepCSV_vertexCategory), flat(flavour)
    return float(np.mean(mass[(flavours == 5) & (category == 0)]))


def test_sv_mass_knob_applied(tmp_path):
    knobs = Mismodeling.model_validate({"b": {"sv_mass_scale": 0.3}})
    preset = small_preset([{"name": "tt", "process": "ttbar_semilep", "role": "calibration", "events": 1500, "data": True}],
                          lumi=6.0, mismodeling=knobs)
    generate(preset, tmp_path, seed=3)
    mc_flavour = uproot.open(tmp_path / "tt.root")["Events"]["Jet_hadronFlavour"].array()
    data_flavour = uproot.open(tmp_path / "data_tt_truth.root")["Truth"]["Jet_hadronFlavour"].array()
    ratio = mean_b_vertex_mass(tmp_path / "data_tt.root", data_flavour) / mean_b_vertex_mass(tmp_path / "tt.root", mc_flavour)
    assert 1.22 < ratio < 1.38
    assert json.loads((tmp_path / "mismodeling.json").read_text())["knobs"]["b"]["sv_mass_scale"] == 0.3


def test_closure_sets_knobs_to_zero(tmp_path):
    preset = small_preset([{"name": "dy", "process": "dy", "role": "calibration", "events": 200, "data": True}],
                          mismodeling=load_preset("demo").mismodeling, closure=True, lumi=0.1)
    generate(preset, tmp_path)
    recorded = json.loads((tmp_path / "mismodeling.json").read_text())
    assert recorded["closure"] is True
    assert Mismodeling.model_validate(recorded["knobs"]).is_zero()


def test_same_seed_same_events(tmp_path):
    preset = small_preset([{"name": "tt", "process": "ttbar_dilep", "role": "calibration", "events": 300, "data": True}], lumi=3.0)
    arrays = []
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(preset, tmp_path / run, seed=seed)
        arrays.append(uproot.open(tmp_path / run / "data_tt.root")["Events"].arrays(["Jet_pt", "PFCands_d0", "SV_mass"]))
    assert ak.array_equal(arrays[0], arrays[1])
    assert not ak.array_equal(arrays[0].Jet_pt, arrays[2].Jet_pt)


# -- presets and CLI -----------------------------------------------------------------------------


def test_builtin_presets_valid():
    demo, full = load_preset("demo"), load_preset("full")
    assert {d.role for d in demo.datasets} == {"calibration", "training"}
    assert sum(d.events for d in full.datasets) > 5 * sum(d.events for d in demo.datasets)


def test_preset_unknown_key_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlumi: 1\nluminosity: 2\ndatasets:\n  - {name: dy, process: dy, role: calibration, events: 10}\n")
    with pytest.raises(ValueError, match="luminosity") as error:
        load_preset(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("body, needle", [
    ("name: x\nlumi: 1\ndatasets:\n  - {name: dy, process: zprime, role: calibration, events: 10}\n", "process"),
    ("name: x\nlumi: 1\nmismodeling: {b: {sv_mass_scale: -2}}\ndatasets:\n  - {name: dy, process: dy, role: calibration, events: 10}\n", "sv_mass_scale"),
    ("name: x\nlumi: 1\ndatasets:\n  - {name: q, process: qcd, role: training, events: 10, data: true}\n", "pseudo-data"),
    ("- just a list\n", "mapping"),
], ids=["unknown-process", "knob-below-minus-one", "training-data", "not-a-mapping"])
def test_preset_invalid_values_rejected(tmp_path, body, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=needle):
        load_preset(path)


def test_preset_missing_or_unknown():
    with pytest.raises(FileNotFoundError, match="demo"):
        load_preset("no_such_preset")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_preset("/nonexistent/preset.yaml")


def test_preset_scaling_keeps_proportions():
    demo = load_preset("demo")
    scaled = demo.scaled(6000)
    largest = max(d.events for d in demo.datasets)
    assert max(d.events for d in scaled.datasets) == 6000
    assert scaled.lumi == pytest.approx(demo.lumi * 6000 / largest)
    for before, after in zip(demo.datasets, scaled.datasets):
        assert after.events == max(1, round(before.events * 6000 / largest))


def test_cli_generate(tmp_path, capsys):
    from advcalib.cli import main

    preset = tmp_path / "tiny.yaml"
    preset.write_text("name: tiny\nlumi: 0.2\ndatasets:\n  - {name: dy, process: dy, role: calibration, events: 100, data: true}\n")
    assert main(["generate", "--preset", str(preset), "--out", str(tmp_path / "out"), "--seed", "2"]) == 0
    assert (tmp_path / "out" / "fileset.json").exists()
    assert main(["generate", "--preset", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().out


def test_deepjet_input_branches(tmp_path):
    pytest.importorskip("advcalib.inputs")
    preset = small_preset([{"name": "tt", "process": "ttbar_semilep", "role": "training", "events": 60}])
    generate(preset, tmp_path, deepjet_inputs=True)
    tree = uproot.open(tmp_path / "tt.root")["Events"]
    n_charged = tree["Jet_DeepJet_nCpfcand"].array()
    charge = tree["PFCands_charge"].array()
    pt = tree["PFCands_pt"].array()
    jet_index = tree["JetPFCands_jetIdx"].array()
    # The input builder keeps candidates with pt >= 0.95 GeV, as CMSSW's DeepJet tag info does.
    expected = [np.minimum(np.bincount(ak.to_numpy(j[(c != 0) & (p >= 0.95)]), minlength=len(n)), 25)
                for j, c, p, n in zip(jet_index, charge, pt, n_charged)]
    assert all(np.array_equal(ak.to_numpy(n), e) for n, e in zip(n_charged, expected))


# -- kinematics helpers --------------------------------------------------------------------------


def test_two_body_decay_conserves_momentum():
    rng = np.random.default_rng(1)
    parent = kin.resonance(rng, 500, mass=np.full(500, kin.Z_MASS), pt_mean=30.0, rapidity_width=1.0)
    a, b = kin.two_body_decay(rng, parent, 0.1057, 0.1057)
    np.testing.assert_allclose(a + b, parent, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(kin.ptetaphim(a)[3], 0.1057, atol=1e-3)


def test_breit_wigner_within_bounds():
    values = kin.breit_wigner(np.random.default_rng(0), 10000, mass=91.2, width=2.5, low=50.0, high=150.0)
    assert values.min() >= 50.0
    assert values.max() <= 150.0
    assert abs(np.median(values) - 91.2) < 0.2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-200, 12000).map(lambda i: i / 4)), min_size=1, max_size=40))
def test_segment_rank_matches_lexsort(rows):
    parent = np.array([r[0] for r in rows])
    key = np.array([r[1] for r in rows])
    order = segment_rank(parent, key)
    assert np.array_equal(parent[order], np.sort(parent))
    for p in np.unique(parent):
        assert np.array_equal(key[order][parent[order] == p], np.sort(key[parent == p])[::-1])


def test_empty_dataset_still_has_tree(tmp_path):
    # A luminosity this small gives no pseudo-data events, and the filter drops every simulated one.
    preset = small_preset([{"name": "w", "process": "wjets", "role": "calibration", "events": 3, "data": True,
                            "filter": "soft_muon"}], lumi=1e-6)
    generate(preset, tmp_path)
    for name, tree in (("w", "Events"), ("data_w", "Events"), ("data_w_truth", "Truth")):
        assert uproot.open(tmp_path / f"{name}.root")[tree].num_entries == 0
    metadata = json.loads((tmp_path / "fileset.json").read_text())["w"]["metadata"]
    assert metadata["sumw"] == 3.0


# -- chunk buffering and random draws ------------------------------------------------------------


def test_filtered_chunks_written_together(tmp_path):
    # 6 chunks of 2000 generated events keep about 30 events each, written as one basket.
    preset = Preset.model_validate({"name": "test", "lumi": 1.0, "chunk_size": 2000, "datasets": [
        {"name": "w", "process": "wjets", "role": "calibration", "events": 12000, "filter": "soft_muon"}]})
    generate(preset, tmp_path, seed=2)
    tree = uproot.open(tmp_path / "w.root")["Events"]
    metadata = json.loads((tmp_path / "fileset.json").read_text())["w"]["metadata"]
    assert 0 < tree.num_entries == metadata["events"] < 2000
    assert tree["Jet_pt"].num_baskets == 1
    assert tree["event"].array(library="np").tolist() == list(range(1, tree.num_entries + 1))


def test_merge_chunks_keeps_local_indices():
    from advcalib.generate.chunk import merge_chunks, simulate_chunk

    parts = [simulate_chunk(np.random.default_rng(index), process="ttbar_dilep", n=150, mismodeling=None,
                            is_data=True, soft_muon=False) for index in range(2)]
    merged = merge_chunks(parts)
    assert merged.n_events == merged.n_generated == 300
    assert np.array_equal(merged.scalars["PV_z"], np.concatenate([p.scalars["PV_z"] for p in parts]))
    assert np.array_equal(merged.truth_flavour, np.concatenate([p.truth_flavour for p in parts]))
    jet_counts = merged.collections["Jet"][0]
    cand_counts, cand_fields = merged.collections["JetPFCands"]
    assert np.array_equal(jet_counts, np.concatenate([p.collections["Jet"][0] for p in parts]))
    assert np.all(cand_fields["jetIdx"] < np.repeat(jet_counts, cand_counts))
    assert np.array_equal(cand_fields["btagSip3dSig"],
                          np.concatenate([p.collections["JetPFCands"][1]["btagSip3dSig"] for p in parts]))


def test_gamma2_moments():
    from advcalib.generate.table import gamma2

    draws = gamma2(np.random.default_rng(4), 200_000)
    assert draws.min() > 0
    assert abs(draws.mean() - 2.0) < 0.02
    assert abs(draws.var() - 2.0) < 0.05


def test_filtered_w_decays_after_filter():
    from advcalib.generate.chunk import simulate_chunk

    chunk = simulate_chunk(np.random.default_rng(5), process="wcharm", n=3000, mismodeling=None, is_data=False,
                           soft_muon=True)
    muon_counts, muons = chunk.collections["Muon"]
    electron_counts, electrons = chunk.collections["Electron"]
    muon_event = np.repeat(np.arange(chunk.n_events), muon_counts)
    electron_event = np.repeat(np.arange(chunk.n_events), electron_counts)
    soft_muon_events = np.unique(muon_event[muons["jetIdx"] >= 0])
    prompt = np.bincount(muon_event[muons["jetIdx"] < 0], minlength=chunk.n_events)
    prompt += np.bincount(electron_event[electrons["jetIdx"] < 0], minlength=chunk.n_events)
    assert chunk.n_generated == 3000
    assert 20 < chunk.n_events < 600
    assert np.array_equal(soft_muon_events, np.arange(chunk.n_events))
    assert prompt.max() == 1
    assert np.mean(prompt) > 0.7
