from __future__ import annotations

import numpy as np
import pytest

from advcalib import spec


def test_deepjet_has_613_inputs():
    assert spec.DEEPJET_N_INPUTS == 613


@pytest.mark.parametrize(
    ("name", "shape"),
    [("global", (15,)), ("charged", (25, 16)), ("neutral", (25, 6)), ("vertex", (4, 12))],
)
def test_group_shapes(name, shape):
    assert spec.group(name).shape == shape


def test_integer_flags():
    integer = {f.name for _, f in spec.all_features() if f.integer}
    assert integer == {
        "nCpfcand", "nNpfcand", "nsv", "npv", "TagVarCSV_vertexCategory",
        "TagVarCSV_jetNSelectedTracks", "TagVarCSV_jetNTracksEtaRel",
        "Cpfcan_VTX_ass", "Cpfcan_quality", "Npfcan_isGamma", "sv_ntracks",
    }


def test_integer_mask_broadcasts_over_slots():
    mask = spec.CHARGED.integer_mask()
    assert mask.shape == (25, 16)
    assert mask[:, spec.CHARGED.index("Cpfcan_quality")].all()
    assert not mask[:, spec.CHARGED.index("Cpfcan_ptrel")].any()


def test_bounds_unbounded_is_infinite():
    low, high = spec.VERTEX.bounds()
    assert np.isinf(low[spec.VERTEX.index("sv_pt")])
    assert high[spec.VERTEX.index("sv_dxysig")] == 800.0


def test_deepcsv_has_66_inputs():
    assert len(spec.DEEPCSV.features) == 66
    assert len(set(spec.DEEPCSV.names)) == 66


def test_unknown_group_names_known_ones():
    with pytest.raises(KeyError, match="global, charged, neutral, vertex"):
        spec.group("tracks")
