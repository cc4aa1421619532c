"""Build the DeepJet inputs of PFNano events, from stored inputs or from the PF candidates."""

from __future__ import annotations

import logging

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs import branches
from advcalib.inputs.candidates import build_candidate_features
from advcalib.inputs.container import SOURCES, DeepJetInputs
from advcalib.inputs.jetlevel import build_global_features, read_tagvars, tagvar_branch, tagvar_features
from advcalib.inputs.jets import JetSelection, raw_jets, select_jets
from advcalib.inputs.vertices import build_vertex_features, sv_directions

logger = logging.getLogger(__name__)

_JET_KINEMATICS = ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_rawFactor")
_PFCANDS_BRANCHES = (
    "PV_npvs",
    "JetPFCands_jetIdx",
    "JetPFCands_pFCandsIdx",
    "JetPFCands_btagEtaRel",
    "JetPFCands_btagPtRatio",
    "JetPFCands_btagPParRatio",
    "JetPFCands_btagSip3dVal",
    "JetPFCands_btagSip3dSig",
    "JetPFCands_btagJetDistVal",
    "PFCands_pt",
    "PFCands_eta",
    "PFCands_phi",
    "PFCands_charge",
    "PFCands_pdgId",
    "PFCands_d0",
    "PFCands_d0Err",
    "PFCands_puppiWeight",
    "PFCands_trkChi2",
    "PFCands_pvAssocQuality",
    "PFCands_trkQuality",
    *(
        f"JetSVs_{name}"
        for name in (
            "jetIdx", "sVIdx", "pt", "deltaR", "phirel", "mass", "ntracks", "chi2", "normchi2",
            "dxy", "dxysig", "d3d", "d3dsig", "costhetasvpv", "enration",
        )
    ),
    "SV_eta",
    "SV_phi",
)


def required_branches(source: str) -> list[str]:
    """ROOT branches that ``build_deepjet_inputs`` reads for ``source``."""
    tagvars = [tagvar_branch(name) for name in tagvar_features()]
    if source == "pfcands":
        return [*_JET_KINEMATICS, *tagvars, *_PFCANDS_BRANCHES]
    if source == "deepjet_branches":
        stored = [f"Jet_{name}" for name in branches.deepjet_fields()]
        return ["Jet_pt", "Jet_eta", "Jet_rawFactor", *tagvars, *stored]
    raise ValueError(f"unknown input source {source!r}; use one of {', '.join(SOURCES)}")


def _missing_branches(events: ak.Array, source: str) -> list[str]:
    fields: dict[str, set[str]] = {}
    missing = []
    for branch in required_branches(source):
        collection, _, field = branch.partition("_")
        if collection not in fields:
            fields[collection] = set(events[collection].fields) if collection in events.fields else set()
        if field not in fields[collection]:
            missing.append(branch)
    return missing


def choose_source(events: ak.Array, source: str = "auto") -> str:
    """Resolve ``source``: ``auto`` prefers stored ``Jet_DeepJet_*`` inputs over the candidates.

    Raises ``KeyError`` listing the missing branches when the requested (or every) source
    lacks some.
    """
    candidates = SOURCES if source == "auto" else (source,)
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"unknown input source {source!r}; use 'auto' or one of {', '.join(SOURCES)}")
    problems = {}
    for name in candidates:
        missing = _missing_branches(events, name)
        if not missing:
            return name
        problems[name] = missing
    details = "; ".join(
        f"source {name} lacks {len(m)} branches: {', '.join(m[:4])}{', ...' if len(m) > 4 else ''}"
        for name, m in problems.items()
    )
    if len(problems) > 1:
        raise KeyError(
            f"cannot build DeepJet inputs because the file has the branches of neither input source ({details}). "
            "Use a PFNano file with stored Jet_DeepJet_* inputs or with jet PF candidates"
        )
    raise KeyError(f"cannot build DeepJet inputs because the file lacks branches of the requested source ({details})")


def sanitize(array: np.ndarray, group: spec.InputGroup) -> tuple[np.ndarray, int]:
    """Replace NaN and infinite values by the feature defaults; return float32 and their number."""
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if n_bad:
        defaults = np.broadcast_to(np.array([f.default for f in group.features]), array.shape)
        array = np.where(bad, defaults, array)
    return array.astype(np.float32), n_bad


def _from_pfcands(events: ak.Array, selection: JetSelection) -> tuple[np.ndarray, ...]:
    jets = raw_jets(events, selection)
    sv, nsv = build_vertex_features(events, selection, jets)
    cpf, npf, n_cpf, n_npf = build_candidate_features(events, selection, jets, sv_directions(events))
    counts = {"nCpfcand": n_cpf, "nNpfcand": n_npf, "nsv": nsv}
    glob = build_global_features(events, selection, jets, counts=counts)
    return glob, cpf, npf, sv


def _from_branches(events: ak.Array, selection: JetSelection) -> tuple[np.ndarray, ...]:
    jets = raw_jets(events, selection)
    columns = {"jet_pt": jets.pt, "jet_eta": jets.eta, **branches.read_counts(events, selection)}
    columns.update(read_tagvars(events, selection))
    glob = np.stack([np.asarray(columns[name], dtype=np.float64) for name in spec.GLOBAL.names], axis=1)
    groups = (spec.CHARGED, spec.NEUTRAL, spec.VERTEX)
    return (glob, *(branches.read_slots(events, selection, group) for group in groups))


def build_deepjet_inputs(events: ak.Array, jet_index: ak.Array | None = None, *, source: str = "auto") -> DeepJetInputs:
    """Build the 613 DeepJet inputs (plus ``input_5``) of the selected jets.

    Method: CMSSW's ``DeepFlavourTagInfoProducer`` and ``DeepFlavourONNXJetTagsProducer``
    (``make_inputs``) on packed candidates, reproduced column-wise; see ``docs/inputs.md`` for
    each feature's definition and for the ones PFNano cannot reproduce exactly.

    ``events`` are eager NanoEvents (``PFNanoAODSchema``); ``jet_index`` is a jagged array of
    indices into ``events.Jet`` (None: all jets). ``source`` is ``"deepjet_branches"`` (stored
    ``Jet_DeepJet_*`` inputs), ``"pfcands"`` (derived from ``JetPFCands``, ``PFCands``,
    ``JetSVs``, ``SV``) or ``"auto"`` (stored inputs when present). Jets without candidates
    or vertices get zero-padded slots; zero selected jets give ``DeepJetInputs.empty()``.
    NaN and infinite values become the feature default (0) and are counted in
    ``n_sanitized``.
    """
    chosen = choose_source(events, source)
    selection = select_jets(events, jet_index)
    logger.info("building DeepJet inputs of %d jets from source %s", len(selection), chosen)
    if len(selection) == 0:
        return DeepJetInputs.empty(chosen)
    raw = _from_pfcands(events, selection) if chosen == "pfcands" else _from_branches(events, selection)
    first = selection.duplicate_rows()
    arrays, n_sanitized = [], 0
    for group, array in zip(spec.DEEPJET_GROUPS, raw):
        clean, n_bad = sanitize(array[first], group)
        arrays.append(clean)
        n_sanitized += n_bad
    if n_sanitized:
        logger.warning("replaced %d NaN or infinite DeepJet input values by their defaults", n_sanitized)
    glob, cpf, npf, sv = arrays
    return DeepJetInputs(
        glob=glob,
        cpf=cpf,
        npf=npf,
        sv=sv,
        jet_pt=glob[:, [spec.GLOBAL.index("jet_pt")]],
        event_index=selection.event_index,
        jet_index=selection.jet_index,
        source=chosen,
        n_sanitized=n_sanitized,
    )
