"""DeepJet and DeepCSV input specification: the one source of truth for every input.

The groups, their order and the order of features inside each group follow what the
CMSSW DeepFlavour ONNX producer (``RecoBTag/ONNXRuntime``, ``make_inputs``) feeds the
network: ``input_1`` global features, ``input_2`` charged candidates, ``input_3``
neutral candidates, ``input_4`` secondary vertices, ``input_5`` the jet pt.
Clipping ranges are those of CMSSW's feature converters (``catch_infs_and_bound``):
a value outside ``[low, high]`` is clipped, NaN and infinite values become ``default``.
Integer-valued features (counts, categories, flags) are never shifted by attacks.

The input builder, the models, the attacks and the documentation all read this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Feature:
    """One input variable of a network."""

    name: str
    integer: bool = False
    low: float | None = None
    high: float | None = None
    default: float = 0.0
    description: str = ""


@dataclass(frozen=True)
class InputGroup:
    """An input group: ``slots`` rows of the same ordered features (1 for per-jet groups)."""

    name: str
    onnx_name: str
    slots: int
    features: tuple[Feature, ...]
    sort_order: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-jet array shape: ``(n_features,)`` for per-jet groups, else ``(slots, n_features)``."""
        if self.slots == 1:
            return (len(self.features),)
        return (self.slots, len(self.features))

    @property
    def size(self) -> int:
        """Number of scalar inputs per jet in this group."""
        return self.slots * len(self.features)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def index(self, name: str) -> int:
        """Position of the feature ``name`` in this group."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"feature {name!r} is not in input group {self.name!r}; known features: {', '.join(self.names)}"
            ) from None

    def integer_mask(self) -> np.ndarray:
        """Boolean mask over the per-jet shape, True where the feature is integer-valued."""
        per_feature = np.array([f.integer for f in self.features], dtype=bool)
        return np.broadcast_to(per_feature, self.shape).copy()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper clipping bounds per feature (``-inf``/``inf`` where unbounded)."""
        low = np.array([-np.inf if f.low is None else f.low for f in self.features], dtype=np.float32)
        high = np.array([np.inf if f.high is None else f.high for f in self.features], dtype=np.float32)
        return low, high


def _f(
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    desc: str = "",
    default: float = 0.0,
) -> Feature:
    return Feature(name=name, integer=integer, low=low, high=high, default=default, description=desc)


GLOBAL = InputGroup(
    name="global",
    onnx_name="input_1",
    slots=1,
    features=(
        _f("jet_pt", desc="uncorrected jet pt, Jet_pt * (1 - Jet_rawFactor) [GeV]"),
        _f("jet_eta", desc="jet pseudorapidity"),
        _f("nCpfcand", integer=True, desc="number of charged PF candidates of the jet"),
        _f("nNpfcand", integer=True, desc="number of neutral PF candidates of the jet"),
        _f("nsv", integer=True, desc="number of secondary vertices within the jet cone"),
        _f("npv", integer=True, desc="number of reconstructed primary vertices (PV_npvs)"),
        _f("TagVarCSV_trackSumJetEtRatio", desc="sum of selected-track ET over jet ET (-999 when missing, as in CMSSW)"),
        _f("TagVarCSV_trackSumJetDeltaR", desc="Delta R between the track sum and the jet axis"),
        _f("TagVarCSV_vertexCategory", integer=True, desc="0 reconstructed SV, 1 pseudo-vertex, 2 none"),
        _f("TagVarCSV_trackSip2dValAboveCharm", desc="2D IP of the first track lifting the mass above the charm mass [cm]"),
        _f("TagVarCSV_trackSip2dSigAboveCharm", desc="2D IP significance of that track"),
        _f("TagVarCSV_trackSip3dValAboveCharm", desc="3D IP of that track [cm]"),
        _f("TagVarCSV_trackSip3dSigAboveCharm", desc="3D IP significance of that track"),
        _f("TagVarCSV_jetNSelectedTracks", integer=True, desc="number of selected tracks"),
        _f("TagVarCSV_jetNTracksEtaRel", integer=True, desc="number of tracks used for etaRel"),
    ),
)

CHARGED = InputGroup(
    name="charged",
    onnx_name="input_2",
    slots=25,
    sort_order=(
        "descending 2D IP significance, then ascending Delta R to the nearest SV, then descending pt "
        "ratio; the first 25 are kept"
    ),
    features=(
        _f("Cpfcan_BtagPf_trackEtaRel", -5.0, 15.0, desc="track pseudorapidity relative to the jet axis"),
        _f("Cpfcan_BtagPf_trackPtRel", -1.0, 4.0, desc="track momentum transverse to the jet axis [GeV]"),
        _f("Cpfcan_BtagPf_trackPPar", -1e5, 1e5, desc="track momentum along the jet axis [GeV]"),
        _f("Cpfcan_BtagPf_trackDeltaR", -5.0, 5.0, desc="Delta R between track and jet axis"),
        _f("Cpfcan_BtagPf_trackPParRatio", -10.0, 100.0, desc="track momentum along the jet axis over track momentum"),
        _f("Cpfcan_BtagPf_trackSip2dVal", -1.0, 70.0, desc="signed 2D impact parameter [cm]"),
        _f("Cpfcan_BtagPf_trackSip2dSig", -1.0, 4e4, desc="signed 2D impact parameter significance"),
        _f("Cpfcan_BtagPf_trackSip3dVal", -1.0, 1e5, desc="signed 3D impact parameter [cm]"),
        _f("Cpfcan_BtagPf_trackSip3dSig", -1.0, 4e4, desc="signed 3D impact parameter significance"),
        _f("Cpfcan_BtagPf_trackJetDistVal", -20.0, 1.0, desc="distance of closest approach to the jet axis [cm]"),
        _f("Cpfcan_ptrel", -1.0, 0.0, desc="candidate pt over raw jet pt, minus 1"),
        _f("Cpfcan_drminsv", -0.4, 0.0, desc="smallest Delta R to a secondary vertex (at most 0.4), minus 0.4"),
        _f("Cpfcan_VTX_ass", integer=True, desc="primary-vertex association quality (PackedCandidate, 0 to 7)"),
        _f("Cpfcan_puppiw", desc="PUPPI weight"),
        _f("Cpfcan_chi2", -1.0, 300.0, default=300.0, desc="normalised track chi2 (-1 without track details)"),
        _f("Cpfcan_quality", integer=True, desc="track quality mask (1 loose, 5 loose and highPurity)"),
    ),
)

NEUTRAL = InputGroup(
    name="neutral",
    onnx_name="input_3",
    slots=25,
    sort_order=(
        "ascending Delta R to the nearest SV (candidates nearest a vertex first), then descending pt "
        "ratio; the first 25 are kept"
    ),
    features=(
        _f("Npfcan_ptrel", -1.0, 0.0, desc="candidate pt over raw jet pt, minus 1"),
        _f("Npfcan_deltaR", -0.6, 0.0, desc="Delta R between candidate and jet axis, minus 0.6"),
        _f("Npfcan_isGamma", integer=True, desc="1 for photons, 0 for neutral hadrons"),
        _f("Npfcan_HadFrac", desc="HCAL fraction of the candidate energy (PackedCandidate hcalFraction)"),
        _f("Npfcan_drminsv", -0.4, 0.0, desc="smallest Delta R to a secondary vertex (at most 0.4), minus 0.4"),
        _f("Npfcan_puppiw", desc="PUPPI weight"),
    ),
)

VERTEX = InputGroup(
    name="vertex",
    onnx_name="input_4",
    slots=4,
    sort_order="descending 2D flight-distance significance (dxysig); the first 4 within Delta R 0.4 are kept",
    features=(
        _f("sv_pt", desc="secondary-vertex pt [GeV]"),
        _f("sv_deltaR", -2.0, 0.0, desc="Delta R between the SV momentum and the jet axis, minus 0.5"),
        _f("sv_mass", desc="secondary-vertex mass [GeV]"),
        _f("sv_ntracks", integer=True, desc="number of tracks of the vertex"),
        _f("sv_chi2", desc="vertex fit chi2"),
        _f("sv_normchi2", -1000.0, 1000.0, default=1000.0, desc="vertex fit chi2 over degrees of freedom"),
        _f("sv_dxy", desc="2D flight distance [cm]"),
        _f("sv_dxysig", -1.0, 800.0, desc="2D flight-distance significance"),
        _f("sv_d3d", desc="3D flight distance [cm]"),
        _f("sv_d3dsig", -1.0, 800.0, desc="3D flight-distance significance"),
        _f("sv_costhetasvpv", desc="cosine of the angle between flight direction and momentum"),
        _f("sv_enratio", desc="vertex energy over raw jet energy"),
    ),
)

JET_PT = InputGroup(
    name="jet_pt",
    onnx_name="input_5",
    slots=1,
    features=(_f("jet_pt_input5", desc="jet pt fed to the CMS ONNX networks as a separate input [GeV]"),),
)

#: The four DeepJet input groups in the order the network consumes them.
DEEPJET_GROUPS: tuple[InputGroup, ...] = (GLOBAL, CHARGED, NEUTRAL, VERTEX)

#: DeepJet output classes, in the order of the network's softmax.
DEEPJET_CLASSES: tuple[str, ...] = ("b", "bb", "lepb", "c", "uds", "g")

DEEPJET_N_INPUTS: int = sum(g.size for g in DEEPJET_GROUPS)


def _deepcsv_features() -> tuple[Feature, ...]:
    jet_level = [
        _f("jet_pt", desc="jet pt [GeV]"),
        _f("jet_eta", desc="jet pseudorapidity"),
        _f("jetNSecondaryVertices", integer=True),
        _f("trackSumJetEtRatio"),
        _f("trackSumJetDeltaR"),
        _f("vertexCategory", integer=True),
        _f("trackSip2dValAboveCharm"),
        _f("trackSip2dSigAboveCharm"),
        _f("trackSip3dValAboveCharm"),
        _f("trackSip3dSigAboveCharm"),
        _f("jetNSelectedTracks", integer=True),
        _f("jetNTracksEtaRel", integer=True),
    ]
    per_track = [
        "trackSip2dSig",
        "trackSip3dSig",
        "trackPtRel",
        "trackPtRatio",
        "trackDeltaR",
        "trackJetDistVal",
        "trackDecayLenVal",
    ]
    tracks = [_f(f"{name}_{i}") for i in range(6) for name in per_track]
    eta_rel = [_f(f"trackEtaRel_{i}") for i in range(4)]
    vertex = [
        _f("vertexMass"),
        _f("vertexNTracks", integer=True),
        _f("vertexEnergyRatio"),
        _f("vertexJetDeltaR"),
        _f("flightDistance2dVal"),
        _f("flightDistance2dSig"),
        _f("flightDistance3dVal"),
        _f("flightDistance3dSig"),
    ]
    return tuple(jet_level + tracks + eta_rel + vertex)


#: DeepCSV's 66 inputs; all but jet pt and eta are read from ``Jet_DeepCSV_<name>``.
DEEPCSV = InputGroup(name="deepcsv", onnx_name="input", slots=1, features=_deepcsv_features())

#: DeepCSV output classes.
DEEPCSV_CLASSES: tuple[str, ...] = ("b", "bb", "c", "udsg")


def group(name: str) -> InputGroup:
    """Look up a DeepJet input group by name (``global``, ``charged``, ``neutral``, ``vertex``)."""
    for g in DEEPJET_GROUPS:
        if g.name == name:
            return g
    known = ", ".join(g.name for g in DEEPJET_GROUPS)
    raise KeyError(f"unknown DeepJet input group {name!r}; known groups: {known}")


def all_features() -> list[tuple[InputGroup, Feature]]:
    """Every DeepJet feature with its group, in network order (group by group)."""
    return [(g, f) for g in DEEPJET_GROUPS for f in g.features]
