"""Cut and selection objects, and the cut tables of every calibration region.

Every threshold of the light, charm and bottom selections lives in :data:`CUT_TABLES`;
the selection functions in ``light.py``, ``charm.py`` and ``bottom.py`` only read them.
A :class:`Selection` pairs one table with one of those pure columnar functions, and its
identity is derived from the selection name, the channel and the cut values, so an
output can state which cuts made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import awkward as ak
import numpy as np


@dataclass(frozen=True)
class Cut:
    """One named threshold or choice of a selection, with a one-line description."""

    name: str
    value: Any
    description: str


@dataclass(frozen=True)
class CutTable:
    """Ordered, immutable table of the cuts of one selection channel."""

    cuts: tuple[Cut, ...]

    def __post_init__(self) -> None:
        names = [cut.name for cut in self.cuts]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"cut table defines {', '.join(duplicates)} more than once")

    def __getitem__(self, name: str) -> Any:
        for cut in self.cuts:
            if cut.name == name:
                return cut.value
        raise KeyError(f"cut {name!r} is not in the table (cuts: {', '.join(self.names())})")

    def __iter__(self) -> Iterator[Cut]:
        return iter(self.cuts)

    def names(self) -> list[str]:
        return [cut.name for cut in self.cuts]

    def values(self) -> dict[str, Any]:
        """Cut values keyed by name, in table order."""
        return {cut.name: cut.value for cut in self.cuts}

    def with_values(self, **values: Any) -> CutTable:
        """Copy of the table with some values replaced; unknown names raise ``KeyError``."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise KeyError(f"cannot override {', '.join(unknown)}: not in the table (cuts: {', '.join(self.names())})")
        return CutTable(tuple(replace(cut, value=values.get(cut.name, cut.value)) for cut in self.cuts))


@dataclass
class SelectionSteps:
    """What a selection function returns for one chunk of events.

    ``steps`` contains the event-level cuts in the order they are applied (each a boolean
    array over all events, not yet combined). ``probe`` is the index of the probe jet in
    ``events.Jet`` and ``osss`` the charge-sign category (+1 OS, -1 SS). Both may contain
    None or any value where the event fails, because only selected events are read.
    """

    steps: dict[str, ak.Array | np.ndarray]
    probe: ak.Array
    osss: ak.Array | np.ndarray | int


@dataclass(frozen=True)
class SelectionResult:
    """Per-event outcome of a selection: passing mask, probe jet index, osss, cutflow."""

    mask: np.ndarray
    probe: np.ndarray
    osss: np.ndarray
    cutflow: dict[str, int]

    @property
    def n_selected(self) -> int:
        return int(self.mask.sum())


SelectionFunction = Callable[[Any, CutTable, str], SelectionSteps]


@dataclass(frozen=True)
class Selection:
    """A calibration region in one channel: a name, a cut table and a pure function.

    ``apply(events)`` runs the function, combines the event-level steps in order and
    counts the events that survive each one. The ``all`` entry of the cutflow counts
    the events of the chunk before any cut.
    """

    name: str
    channel: str
    cuts: CutTable
    function: SelectionFunction = field(compare=False, repr=False)

    @property
    def identity(self) -> str:
        """``name/channel/hash``; the hash covers the name, channel and every cut value."""
        payload = json.dumps(
            {"name": self.name, "channel": self.channel, "cuts": self.cuts.values()}, sort_keys=True, default=str
        )
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{self.name}/{self.channel}/{digest}"

    def apply(self, events: Any) -> SelectionResult:
        """Select events; see :class:`SelectionResult`. Zero events give empty arrays."""
        n_events = len(events)
        result = self.function(events, self.cuts, self.channel)
        mask = np.ones(n_events, dtype=bool)
        cutflow = {"all": n_events}
        for step, passed in result.steps.items():
            mask &= _as_bool(passed, n_events)
            cutflow[step] = int(mask.sum())
        probe = _as_int(result.probe, n_events, fill=-1)
        osss = _as_int(result.osss, n_events, fill=0)
        probe[~mask] = -1
        osss[~mask] = 0
        if np.any(probe[mask] < 0):
            raise RuntimeError(f"selection {self.identity} passed an event without a probe jet")
        return SelectionResult(mask=mask, probe=probe, osss=osss.astype(np.int8), cutflow=cutflow)


def _as_bool(values: Any, n_events: int) -> np.ndarray:
    if np.isscalar(values):
        return np.full(n_events, bool(values))
    return np.asarray(ak.to_numpy(ak.fill_none(values, False)), dtype=bool).reshape(n_events)


def _as_int(values: Any, n_events: int, *, fill: int) -> np.ndarray:
    if np.isscalar(values):
        return np.full(n_events, int(values), dtype=np.int64)
    array = ak.to_numpy(ak.fill_none(values, fill))
    return np.array(array, dtype=np.int64).reshape(n_events)


# --- Cut tables ---------------------------------------------------------------------------

DIMUON_TRIGGERS = ("HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ_Mass8", "HLT_Mu17_TrkIsoVVL_Mu8_TrkIsoVVL_DZ")
DIELECTRON_TRIGGERS = ("HLT_Ele23_Ele12_CaloIdL_TrackIdL_IsoVL_DZ", "HLT_Ele23_Ele12_CaloIdL_TrackIdL_IsoVL")
SINGLE_MUON_TRIGGERS = ("HLT_IsoMu24", "HLT_IsoMu27")
SINGLE_ELECTRON_TRIGGERS = ("HLT_Ele32_WPTight_Gsf", "HLT_Ele32_WPTight_Gsf_L1DoubleEG", "HLT_Ele35_WPTight_Gsf")
MUON_ELECTRON_TRIGGERS = (
    "HLT_Mu23_TrkIsoVVL_Ele12_CaloIdL_TrackIdL_IsoVL_DZ",
    "HLT_Mu23_TrkIsoVVL_Ele12_CaloIdL_TrackIdL_IsoVL",
    "HLT_Mu8_TrkIsoVVL_Ele23_CaloIdL_TrackIdL_IsoVL_DZ",
    "HLT_Mu8_TrkIsoVVL_Ele23_CaloIdL_TrackIdL_IsoVL",
)

#: NanoAOD branches of the electron MVA-isolation WP80 flag, newest naming first.
ELECTRON_WP80_FIELDS = ("mvaIso_WP80", "mvaFall17V2Iso_WP80", "mvaFall17V1Iso_WP80")


def _muon_cuts(pt: float, *, iso: float = 0.15) -> tuple[Cut, ...]:
    return (
        Cut("muon_pt", pt, "isolated muon pt > value [GeV]"),
        Cut("muon_abseta", 2.4, "isolated muon |eta| < value"),
        Cut("muon_iso", iso, "isolated muon pfRelIso04_all <= value, and tightId"),
    )


def _electron_cuts(pt: float, *, cut_based_alternative: bool) -> tuple[Cut, ...]:
    return (
        Cut("electron_pt", pt, "isolated electron pt > value [GeV]"),
        Cut("electron_abseta", 2.5, "isolated electron |eta| < value"),
        Cut("electron_wp80_fields", ELECTRON_WP80_FIELDS, "MVA-isolation WP80 flag, first branch present"),
        Cut(
            "electron_cut_based_min",
            4 if cut_based_alternative else None,
            "alternative to WP80: cutBased >= value (4 = tight); None = WP80 only",
        ),
    )


def _jet_cuts(clean_dr: float) -> tuple[Cut, ...]:
    return (
        Cut("jet_pt", 20.0, "jet pt > value [GeV]"),
        Cut("jet_abseta", 2.5, "jet |eta| < value"),
        Cut("jet_id_mask", 4, "jetId & value != 0 (bit 4: tight with lepton veto)"),
        Cut("jet_lepton_dr", clean_dr, "DeltaR(jet, each selected lepton) > value"),
    )


def _soft_muon_cuts() -> tuple[Cut, ...]:
    return (
        Cut("soft_muon_pt_max", 25.0, "soft muon pt < value [GeV], tightId"),
        Cut("soft_muon_abseta", 2.4, "soft muon |eta| < value"),
        Cut("soft_muon_iso_min", 0.2, "soft muon pfRelIso04_all > value (non-isolated)"),
        Cut("soft_muon_dxy_sig_min", 1.0, "soft muon |dxy / dxyErr| > value"),
        Cut("soft_muon_jet_dr", 0.4, "DeltaR(soft muon, jet) < value"),
        Cut("soft_muon_pt_ratio_max", 0.4, "pt(soft muon) / pt(jet) < value"),
        Cut("jet_mu_ne_em_fraction_max", 0.7, "jet muEF + neEmEF < value"),
    )


def _veto_cuts() -> tuple[Cut, ...]:
    return (
        Cut("veto_muon_pt", 15.0, "second isolated muon (same ID and isolation) vetoed above value [GeV]"),
        Cut("veto_electron_pt", 15.0, "second isolated electron (same ID) vetoed above value [GeV]"),
    )


def _soft_muon_region(lepton: str, *, n_jets: tuple[int, int | None], mt_min: float | None) -> CutTable:
    if lepton == "m":
        leading = (Cut("triggers", SINGLE_MUON_TRIGGERS, "single-muon triggers, OR of those present"),) + _muon_cuts(30.0)
        leading += _electron_cuts(15.0, cut_based_alternative=False)[1:]
        mass = (
            Cut("lepton_soft_muon_mass_min", 12.0, "m(lepton, soft muon) > value [GeV] (muon channel)"),
            Cut("lepton_soft_muon_mass_veto", (80.0, 100.0), "m(lepton, soft muon) outside [low, high] [GeV] (muon channel)"),
        )
    else:
        leading = (Cut("triggers", SINGLE_ELECTRON_TRIGGERS, "single-electron triggers, OR of those present"),)
        leading += _electron_cuts(34.0, cut_based_alternative=False) + _muon_cuts(15.0)[1:]
        mass = ()
    jets = _jet_cuts(0.5) + (
        Cut("n_jets_min", n_jets[0], "number of selected jets >= value"),
        Cut("n_jets_max", n_jets[1], "number of selected jets <= value (None: no upper limit)"),
    )
    mt = (Cut("mt_min", mt_min, "mT(lepton, MET) > value [GeV]"),) if mt_min is not None else ()
    return CutTable(leading + _veto_cuts() + jets + _soft_muon_cuts() + mt + mass)


CUT_TABLES: dict[tuple[str, str], CutTable] = {
    ("light", "mm"): CutTable(
        (Cut("triggers", DIMUON_TRIGGERS, "dimuon triggers, OR of those present"),)
        + _muon_cuts(12.0)
        + (
            Cut("leading_lepton_pt", 20.0, "leading lepton of the pair pt > value [GeV]"),
            Cut("mll_window", (81.0, 101.0), "low < m_ll < high [GeV], opposite-charge pair"),
            Cut("ptll_min", 15.0, "pT of the lepton pair > value [GeV]"),
        )
        + _jet_cuts(0.4)
    ),
    ("light", "ee"): CutTable(
        (Cut("triggers", DIELECTRON_TRIGGERS, "dielectron triggers, OR of those present"),)
        + _electron_cuts(15.0, cut_based_alternative=True)
        + (
            Cut("leading_lepton_pt", 27.0, "leading lepton of the pair pt > value [GeV]"),
            Cut("mll_window", (81.0, 101.0), "low < m_ll < high [GeV], opposite-charge pair"),
            Cut("ptll_min", 15.0, "pT of the lepton pair > value [GeV]"),
        )
        + _jet_cuts(0.4)
    ),
    ("charm", "m"): _soft_muon_region("m", n_jets=(1, 3), mt_min=55.0),
    ("charm", "e"): _soft_muon_region("e", n_jets=(1, 3), mt_min=55.0),
    ("bottom", "m"): _soft_muon_region("m", n_jets=(4, None), mt_min=None),
    ("bottom", "e"): _soft_muon_region("e", n_jets=(4, None), mt_min=None),
    ("bottom", "emu"): CutTable(
        (Cut("triggers", MUON_ELECTRON_TRIGGERS, "muon-electron triggers, OR of those present"),)
        + _muon_cuts(25.0)
        + _electron_cuts(25.0, cut_based_alternative=True)
        + _jet_cuts(0.4)
        + (Cut("n_jets_min", 2, "number of selected jets >= value"),)
    ),
}


def cut_table(selection: str, channel: str, overrides: Mapping[str, Any] | None = None) -> CutTable:
    """Cut table of a selection channel, with optional value overrides."""
    try:
        table = CUT_TABLES[(selection, channel)]
    except KeyError:
        known = ", ".join(f"{name}/{chan}" for name, chan in CUT_TABLES)
        raise KeyError(f"no cut table for {selection}/{channel}; known: {known}") from None
    return table.with_values(**overrides) if overrides else table
