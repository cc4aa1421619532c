"""correctionlib payload: schema validation, every systematic x flavour, numpy and awkward inputs."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys

import awkward as ak
import correctionlib
import hist
import numpy as np
import pytest
from correctionlib import schemav2

from advcalib.histograms import HADRON_FLAVOUR
from advcalib.scalefactors import ScaleFactorConfig, derive_model
from advcalib.scalefactors.derive import build_corrections
from advcalib.scalefactors.payload import correction_set, shape_correction, write_payload
from advcalib.scalefactors.templates import MC_FLAVOURS
from advcalib.scalefactors.toysample import ToySample, toy_result

SHAPE_INPUTS = {
    "ctag_shape": ["systematic", "flavor", "CvL", "CvB"],
    "btag_shape": ["systematic", "flavor", "abseta", "pt", "discriminant"],
    "bvsl_shape": ["systematic", "flavor", "discriminant"],
    "btag_wp": ["systematic", "working_point", "flavor", "abseta", "pt"],
    "ctag_wp": ["systematic", "working_point", "flavor"],
}


@pytest.fixture(scope="module")
def model_sfs():
    result = toy_result(ToySample(n_data=5000, jes_shift=0.05), seed=11)
    return derive_model(result, "toy", config=ScaleFactorConfig(n_toys=4))


@pytest.fixture(scope="module")
def payload_path(model_sfs, tmp_path_factory):
    path = tmp_path_factory.mktemp("payload") / "sf_toy.json.gz"
    return write_payload(correction_set("toy", build_corrections(model_sfs)), path)


def real_inputs(name, n, rng):
    """Random real inputs of a correction, including out-of-range values (-1 discriminants, pt above 1000)."""
    values = {
        "CvL": rng.uniform(-1.0, 1.0, n), "CvB": rng.uniform(0.0, 1.0, n), "discriminant": rng.uniform(-1.0, 1.0, n),
        "abseta": rng.uniform(0.0, 2.5, n), "pt": rng.uniform(15.0, 1500.0, n),
    }
    return [values[key] for key in SHAPE_INPUTS[name] if key in values]


def test_file_validates_with_schemav2(payload_path):
    with gzip.open(payload_path, "rt") as stream:
        data = json.load(stream)
    assert "$schema" not in data
    cset = schemav2.CorrectionSet.model_validate(data)
    assert {c.name for c in cset.corrections} == set(SHAPE_INPUTS)
    for correction in cset.corrections:
        assert [v.name for v in correction.inputs] == SHAPE_INPUTS[correction.name]
        assert all(v.description for v in correction.inputs)
        assert correction.output.description
        assert correction.version >= 1


def test_correction_validate_command(payload_path):
    completed = subprocess.run([sys.executable, "-m", "correctionlib.cli", "validate", str(payload_path)],
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("name", sorted(SHAPE_INPUTS))
def test_every_systematic_and_flavour_evaluates(payload_path, model_sfs, name):
    cset = correctionlib.CorrectionSet.from_file(str(payload_path))
    correction = cset[name]
    systematics = list(model_sfs.ctag.variations)
    assert "up_jes" in systematics
    rng = np.random.default_rng(0)
    for systematic in systematics:
        for flavour in HADRON_FLAVOUR.values():
            n = 50
            flavor = np.full(n, flavour)
            if name.endswith("_wp"):
                for point in ("L", "M", "T"):
                    out = correction.evaluate(systematic, point, flavor, *real_inputs(name, n, rng))
                    assert np.all(np.isfinite(out))
                    assert np.all(out >= 0)
            else:
                out = correction.evaluate(systematic, flavor, *real_inputs(name, n, rng))
                assert out.shape == (n,)
                assert np.all(np.isfinite(out))
                assert np.all(out >= 0)


def test_awkward_inputs_keep_structure(payload_path):
    cset = correctionlib.CorrectionSet.from_file(str(payload_path))
    counts = [2, 0, 3]
    flavor = ak.unflatten(np.array([5, 4, 0, 0, 5]), counts)
    cvl = ak.unflatten(np.array([0.1, 0.5, 0.9, -1.0, 0.3]), counts)
    cvb = ak.unflatten(np.array([0.2, 0.6, 0.4, 0.5, 0.99]), counts)
    out = cset["ctag_shape"].evaluate("central", flavor, cvl, cvb)
    assert ak.num(out).tolist() == counts
    flat = cset["ctag_shape"].evaluate("central", ak.to_numpy(ak.flatten(flavor)), ak.to_numpy(ak.flatten(cvl)),
                                       ak.to_numpy(ak.flatten(cvb)))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(out)), flat)
    pt = ak.unflatten(np.array([25.0, 60.0, 2000.0, 30.0, 150.0]), counts)
    eta = ak.unflatten(np.array([0.3, 1.5, 2.2, 0.1, 1.0]), counts)
    wp = cset["btag_wp"].evaluate("up_stat", "M", flavor, eta, pt)
    assert ak.num(wp).tolist() == counts


def test_values_match_fitted_arrays(payload_path, model_sfs):
    cset = correctionlib.CorrectionSet.from_file(str(payload_path))
    centres = (np.arange(20) + 0.5) / 20
    cvl, cvb = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
    pt_edges, eta_edges, _ = model_sfs.btag.templates.edges
    for f, flavour in enumerate(MC_FLAVOURS):
        code = np.full(cvl.size, HADRON_FLAVOUR[flavour])
        expected = model_sfs.ctag.variations["down_contam"][f].ravel()
        np.testing.assert_allclose(cset["ctag_shape"].evaluate("down_contam", code, cvl, cvb), expected)
        # One (pt, |eta|) bin of the b-tag shape: pt bin 2, |eta| bin 1.
        pt = np.full(20, 0.5 * (pt_edges[2] + pt_edges[3]))
        eta = np.full(20, 0.5 * (eta_edges[1] + eta_edges[2]))
        out = cset["btag_shape"].evaluate("central", code[:20], eta, pt, centres)
        np.testing.assert_allclose(out, model_sfs.btag.variations["central"][f, 2, 1])
        bvsl = cset["bvsl_shape"].evaluate("up_stats2", code[:20], centres)
        np.testing.assert_allclose(bvsl, model_sfs.bvsl.variations["up_stats2"][f])
        wp = cset["btag_wp"].evaluate("central", "T", code[:1], eta[:1], pt[:1])
        np.testing.assert_allclose(wp, model_sfs.btag_wp["central"]["T"][f, 2, 1])
        ctag_wp = cset["ctag_wp"].evaluate("up_stat", "L", int(HADRON_FLAVOUR[flavour]))
        assert ctag_wp == pytest.approx(model_sfs.ctag_wp["up_stat"]["L"][f])


def test_default_discriminant_clamps_to_first_bin(payload_path, model_sfs):
    cset = correctionlib.CorrectionSet.from_file(str(payload_path))
    out = cset["ctag_shape"].evaluate("central", 4, -1.0, -1.0)
    assert out == pytest.approx(model_sfs.ctag.variations["central"][1, 0, 0])


def test_unknown_systematic_raises(payload_path):
    cset = correctionlib.CorrectionSet.from_file(str(payload_path))
    with pytest.raises(IndexError):
        cset["ctag_shape"].evaluate("up_nonexistent", 5, 0.5, 0.5)


def test_nan_sf_rejected():
    axis = hist.axis.Regular(2, 0.0, 1.0, name="CvL")
    bad = {"central": np.array([[1.0, np.nan], [1.0, 1.0], [1.0, 1.0]])}
    with pytest.raises(ValueError, match="NaN"):
        shape_correction("bad", bad, [axis], description="bad")


def test_write_is_atomic_and_replaces(tmp_path, model_sfs):
    path = tmp_path / "sf.json.gz"
    path.write_text("old")
    write_payload(correction_set("toy", build_corrections(model_sfs)), path)
    assert correctionlib.CorrectionSet.from_file(str(path))["ctag_shape"].version == 1
    assert [p.name for p in tmp_path.iterdir()] == ["sf.json.gz"]


def test_payload_gets_open_mode(tmp_path, model_sfs):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_payload(correction_set("toy", build_corrections(model_sfs)), tmp_path / "sf.json.gz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_payload_bytes_do_not_depend_on_time(tmp_path, model_sfs):
    cset = correction_set("toy", build_corrections(model_sfs))
    first = write_payload(cset, tmp_path / "a.json.gz").read_bytes()
    second = write_payload(cset, tmp_path / "b.json.gz").read_bytes()
    assert first == second
