"""Coffea processor of a calibration run: selections, taggers, histograms.

``CalibrationProcessor.process`` reads as its stages: event weights, the selections,
the probe jets of all selections, the discriminators of every model on those jets, and
the histogram fills. It stores configuration only, so chunks can run in any order on any
worker, and their outputs add. Taggers are loaded on first use in each worker process
and never pickled with the processor.

The output of one chunk (and of the whole run, after coffea adds the chunks) is::

    {"hists": {name: Hist}, "truth_hists": {name: Hist},
     "cutflow": {dataset: {selection: {channel: {cut: n_events}}}},
     "sumw": {dataset: sum of genWeight (MC) or number of events (data)},
     "n_events": {dataset: int}, "skipped_models": {(dataset, file, reason), ...}}

Histograms are filled with weight genWeight (times the variation) for simulation and 1
for data; the normalisation to cross-section and luminosity happens after the run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import hist
import numpy as np
import uproot
from coffea import processor

from advcalib import histograms
from advcalib.selections import Selection, SelectionResult, default_selections
from advcalib.selections.objects import shared_objects

logger = logging.getLogger(__name__)

#: Model name under which the discriminators stored in the NanoAOD file are filled.
STORED_MODEL = "stored"

#: Packaged taggers a run uses when no model is given.
DEFAULT_MODELS: dict[str, str] = {"nominal": "nominal", "adversarial": "adversarial"}

#: Names of the four NanoAOD parton-shower weights, in the order of ``PSWeight``.
PS_WEIGHT_NAMES: tuple[str, ...] = ("PS_ISR_up", "PS_FSR_up", "PS_ISR_down", "PS_FSR_down")

#: Discriminator columns each histogram needs, besides the category axes.
HISTOGRAM_DISCRIMINATORS: dict[str, tuple[str, ...]] = {
    "BvsL": ("BvsL",),
    "CvsB": ("CvsB",),
    "CvsL": ("CvsL",),
    "CvsL_CvsB": ("CvsL", "CvsB"),
    "BvsAll": ("BvsAll",),
    "probe_pt": (),
}


@dataclass(frozen=True)
class Probes:
    """Probe jets of one selection channel: one entry per selected event."""

    event: np.ndarray
    jet: np.ndarray
    osss: np.ndarray


@functools.lru_cache(maxsize=16)
def cached_tagger(source: str, device: str | None) -> Any:
    """Load a tagger once per process and keep it (see ``advcalib.models.load_tagger``).

    On a Dask worker the source resolves to the copy shipped by the scale-out plugins,
    so a model given by path or packaged name loads without a shared filesystem.
    """
    from advcalib.scaleout.plugins import cached_model

    return cached_model(source, device=device)


class CalibrationProcessor(processor.ProcessorABC):
    """Fill the discriminator histograms of the calibration regions.

    ``models`` maps model names to tagger sources (packaged name or file path); the
    model ``stored`` is always added and reads the ``Jet_btagDeepFlav*`` branches.
    ``selections`` defaults to every region in every channel.
    """

    def __init__(
        self,
        *,
        models: Mapping[str, str] | None = None,
        selections: Sequence[Selection] | None = None,
        device: str | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.models = dict(DEFAULT_MODELS if models is None else models)
        if STORED_MODEL in self.models:
            raise ValueError(f"model name {STORED_MODEL!r} is reserved for the discriminators stored in the files")
        self.selections = tuple(default_selections() if selections is None else selections)
        self.device = device
        self.batch_size = batch_size

    def __getstate__(self) -> dict[str, Any]:
        # Only the configuration travels to workers; taggers load there (cached_tagger).
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def process(self, events: Any) -> dict[str, Any]:
        """Run every selection on one chunk and fill its histograms."""
        metadata = events.metadata
        dataset = metadata["dataset"]
        source = metadata.get("filename", dataset)
        is_data = bool(metadata["is_data"])
        output = empty_output(dataset, self.selections)
        output["n_events"][dataset] = len(events)

        reason = missing_deepjet_inputs(events) if self.models else None
        if reason is not None:
            _warn_skipped_models(source, tuple(self.models), reason)
            output["skipped_models"].add((dataset, source, reason))

        weights = event_weights(events, is_data=is_data, source=source)
        output["sumw"][dataset] = float(len(events)) if is_data else float(np.sum(weights["nominal"]))
        with shared_objects(events):
            results = [(selection, selection.apply(events)) for selection in self.selections]
        for selection, result in results:
            output["cutflow"][dataset][selection.name][selection.channel] = result.cutflow
        probes = {selection: probes_of(result) for selection, result in results}
        all_probes = [p for p in probes.values() if len(p.event)]
        if not all_probes:
            return output

        event_ids = np.concatenate([p.event for p in all_probes])
        jet_ids = np.concatenate([p.jet for p in all_probes])
        values = self._model_values(events, event_ids, jet_ids, run_taggers=reason is None, source=source,
                                    sanitized=output["n_sanitized"])
        jets = probe_kinematics(events, event_ids, jet_ids, is_data=is_data, source=source)
        truth = truth_flavours(metadata, event_ids, jet_ids, n_jets=ak.num(events.Jet, axis=1))

        self._fill(output, probes, values, jets, truth, weights, dataset=dataset)
        return output

    def _fill(
        self,
        output: dict[str, Any],
        probes: Mapping[Selection, Probes],
        values: Mapping[str, Mapping[str, np.ndarray]],
        jets: Mapping[str, np.ndarray],
        truth: np.ndarray | None,
        weights: Mapping[str, np.ndarray],
        *,
        dataset: str,
    ) -> None:
        """Fill the histograms; the rows of ``values``, ``jets`` and ``truth`` follow ``probes`` in order."""
        start = 0
        for selection, probe in probes.items():
            rows = slice(start, start + len(probe.event))
            start = rows.stop
            if rows.stop == rows.start:
                continue
            category = {"dataset": dataset, "selection": selection.name, "channel": selection.channel}
            probe_weights = {name: w[probe.event] for name, w in weights.items()}
            kinematics = {"pt": jets["pt"][rows], "abseta": jets["abseta"][rows]}
            for model, discs in values.items():
                model_rows = {name: array[rows] for name, array in discs.items()}
                fill(output["hists"], category | {"model": model}, flavour=jets["flavour"][rows], osss=probe.osss,
                     weights=probe_weights, discs=model_rows, **kinematics)
                if truth is not None:
                    fill(output["truth_hists"], category | {"model": model}, flavour=truth[rows], osss=probe.osss,
                         weights={"nominal": np.ones(len(probe.event))}, discs=model_rows, **kinematics)

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator

    def _model_values(
        self, events: Any, event_ids: np.ndarray, jet_ids: np.ndarray, *, run_taggers: bool, source: str,
        sanitized: dict[str, int] | None = None,
    ) -> dict[str, dict[str, np.ndarray]]:
        """Discriminators of every model on the probe jets, rows in the order given."""
        values = {STORED_MODEL: stored_discriminators(events, event_ids, jet_ids, source=source)}
        if not self.models or not run_taggers:
            return values
        from advcalib.inputs import build_deepjet_inputs
        from advcalib.models import discriminators

        unique_events, unique_jets, rows = unique_pairs(event_ids, jet_ids)
        counts = np.bincount(unique_events, minlength=len(events))
        jet_index = ak.unflatten(unique_jets, counts)
        inputs = build_deepjet_inputs(events, jet_index)
        if sanitized is not None:  # NaN and infinite inputs replaced, for the run report
            sanitized[events.metadata["dataset"]] = inputs.n_sanitized
        order = match_rows(inputs.event_index, inputs.jet_index, unique_events, unique_jets, source=source)
        for name, model_source in self.models.items():
            tagger = cached_tagger(model_source, self.device)
            probs = np.asarray(tagger.predict(inputs, batch_size=self.batch_size))
            discs = discriminators(probs[order][rows])
            values[name] = {key: np.asarray(array) for key, array in discs.items()}
        return values


def empty_output(dataset: str, selections: Sequence[Selection]) -> dict[str, Any]:
    """Output of a chunk without events: empty histograms and a zero cutflow per selection."""
    cutflow: dict[str, dict[str, dict[str, int]]] = {}
    for selection in selections:
        cutflow.setdefault(selection.name, {})[selection.channel] = {"all": 0}
    return {
        "hists": histograms.make_histograms(),
        "truth_hists": histograms.make_histograms(),
        "cutflow": {dataset: cutflow},
        "sumw": {dataset: 0.0},
        "n_events": {dataset: 0},
        "n_sanitized": {dataset: 0},
        "skipped_models": set(),
    }


def event_weights(events: Any, *, is_data: bool, source: str) -> dict[str, np.ndarray]:
    """Per-event weights by systematic: ``nominal`` plus the parton-shower variations.

    Data get 1. Simulation gets ``genWeight``; where every event of the chunk has the
    four NanoAOD ``PSWeight`` entries, ``nominal * PSWeight[i]`` adds the ISR and FSR
    variations. Other weight branches (LHE scale, PDF) are not used yet.
    """
    n_events = len(events)
    if is_data:
        return {"nominal": np.ones(n_events)}
    if "genWeight" not in events.fields:
        raise KeyError(f"{source}: simulation without genWeight; mark the dataset is_data or use a NanoAOD file with genWeight")
    nominal = np.asarray(ak.to_numpy(events.genWeight), dtype=np.float64)
    weights = {"nominal": nominal}
    if "PSWeight" in events.fields:
        ps = events.PSWeight
        if np.all(ak.to_numpy(ak.num(ps, axis=1)) == len(PS_WEIGHT_NAMES)):
            flat = np.asarray(ak.to_numpy(ak.flatten(ps, axis=1)), dtype=np.float64)
            ps_values = flat.reshape(n_events, len(PS_WEIGHT_NAMES))
            for i, name in enumerate(PS_WEIGHT_NAMES):
                weights[name] = nominal * ps_values[:, i]
    return weights


def probes_of(result: SelectionResult) -> Probes:
    """Event rows, probe jet indices and osss of the selected events."""
    event = np.flatnonzero(result.mask)
    return Probes(event=event, jet=result.probe[event], osss=result.osss[event].astype(np.int64))


def jet_values(field: ak.Array, event_ids: np.ndarray, jet_ids: np.ndarray) -> np.ndarray:
    """Values of a jagged jet field at (event, jet) pairs."""
    counts = ak.to_numpy(ak.num(field, axis=1))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = ak.to_numpy(ak.flatten(field, axis=1))
    return flat[offsets[event_ids] + jet_ids]


def probe_kinematics(events: Any, event_ids: np.ndarray, jet_ids: np.ndarray, *, is_data: bool, source: str) -> dict[str, np.ndarray]:
    """Pt, |eta| and flavour category (b, c, light from hadronFlavour; ``data``) of the probes."""
    jets = events.Jet
    pt = jet_values(jets.pt, event_ids, jet_ids)
    abseta = np.abs(jet_values(jets.eta, event_ids, jet_ids))
    if is_data:
        flavour = np.full(len(event_ids), "data")
    else:
        if "hadronFlavour" not in jets.fields:
            raise KeyError(f"{source}: simulation without Jet_hadronFlavour; mark the dataset is_data or add the branch")
        flavour = flavour_names(jet_values(jets.hadronFlavour, event_ids, jet_ids))
    return {"pt": pt, "abseta": abseta, "flavour": flavour}


def flavour_names(hadron_flavour: np.ndarray) -> np.ndarray:
    """Flavour category of each hadronFlavour: 5 -> b, 4 -> c, anything else -> light."""
    names = np.full(len(hadron_flavour), "light", dtype="<U5")
    names[hadron_flavour == histograms.HADRON_FLAVOUR["b"]] = "b"
    names[hadron_flavour == histograms.HADRON_FLAVOUR["c"]] = "c"
    return names


def stored_discriminators(events: Any, event_ids: np.ndarray, jet_ids: np.ndarray, *, source: str) -> dict[str, np.ndarray]:
    """Discriminators of the DeepJet outputs that CMSSW stored in the file.

    BvsAll is ``Jet_btagDeepFlavB``. CvsL and CvsB are ``Jet_btagDeepFlavCvL`` and
    ``CvB``; older NanoAOD files store only ``B`` and ``C`` (= P(c)), and then
    CvsL = C / (1 - B) and CvsB = C / (C + B), exact because the six class probabilities
    sum to one. BvsL is B / (B + UDS + G) from ``Jet_btagDeepFlavUDS`` and ``G``, or
    B / (1 - C) without them. A discriminator whose branches are all missing is left out,
    and its histograms stay empty for model ``stored``. Jets with a negative stored value
    (no tagging information) get -1.
    """
    jets = events.Jet

    def column(name: str) -> np.ndarray | None:
        field = f"btagDeepFlav{name}"
        return jet_values(jets[field], event_ids, jet_ids).astype(np.float64) if field in jets.fields else None

    b, c, cvl, cvb, uds, g = (column(name) for name in ("B", "C", "CvL", "CvB", "UDS", "G"))
    values: dict[str, np.ndarray] = {}
    if b is None:
        logger.debug("%s: no Jet_btagDeepFlavB, model %s has no values", source, STORED_MODEL)
        return values
    values["BvsAll"] = b
    if uds is not None and g is not None:
        values["BvsL"] = _ratio(b, b + uds + g, b, uds, g)
    elif c is not None:
        values["BvsL"] = _ratio(b, 1.0 - c, b, c)
    if cvl is not None:
        values["CvsL"] = cvl
    elif c is not None:
        values["CvsL"] = _ratio(c, 1.0 - b, b, c)
    if cvb is not None:
        values["CvsB"] = cvb
    elif c is not None:
        values["CvsB"] = _ratio(c, c + b, b, c)
    return values


def _ratio(numerator: np.ndarray, denominator: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    valid = (denominator > 0) & np.all([x >= 0 for x in inputs], axis=0)
    return np.where(valid, numerator / np.where(valid, denominator, 1.0), -1.0)


def missing_deepjet_inputs(events: Any) -> str | None:
    """Why DeepJet inputs cannot be built from this file (missing branches), or None."""
    from advcalib.inputs import choose_source

    try:
        choose_source(events)
    except KeyError as error:
        return str(error.args[0]) if error.args else "DeepJet input branches missing"
    return None


@functools.lru_cache(maxsize=256)
def _warn_skipped_models(source: str, models: tuple[str, ...], reason: str) -> None:
    logger.warning("%s: %s; DeepJet models %s skipped, only model %s filled", source, reason, ", ".join(models), STORED_MODEL)


def unique_pairs(event_ids: np.ndarray, jet_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (event, jet) pairs sorted by event then jet, and each input's row among them."""
    stride = int(jet_ids.max()) + 1
    keys = event_ids.astype(np.int64) * stride + jet_ids
    unique, rows = np.unique(keys, return_inverse=True)
    return unique // stride, unique % stride, rows


def match_rows(
    built_events: np.ndarray, built_jets: np.ndarray, events: np.ndarray, jets: np.ndarray, *, source: str
) -> np.ndarray:
    """Row of the built inputs for each requested (event, jet) pair."""
    stride = int(max(built_jets.max(initial=0), jets.max(initial=0))) + 1
    built = np.asarray(built_events, dtype=np.int64) * stride + np.asarray(built_jets, dtype=np.int64)
    wanted = events.astype(np.int64) * stride + jets
    order = np.argsort(built, kind="stable")
    position = np.searchsorted(built[order], wanted)
    position = np.minimum(position, len(built) - 1)
    found = order[position]
    if len(built) == 0 or np.any(built[found] != wanted):
        raise RuntimeError(f"{source}: DeepJet inputs were not built for every probe jet")
    return found


def truth_flavours(metadata: Mapping[str, Any], event_ids: np.ndarray, jet_ids: np.ndarray, *, n_jets: ak.Array) -> np.ndarray | None:
    """True flavour category of the probes of pseudo-data from the truth sidecar, or None.

    The sidecar (tree ``Truth``, branch ``Jet_hadronFlavour``) is aligned entry by entry
    and jet by jet with the data file, so the chunk's entry range is read from it.
    """
    truth = metadata.get("truth") or {}
    filename = metadata.get("filename")
    sidecar = truth.get(filename)
    if sidecar is None:
        return None
    start, stop = metadata["entrystart"], metadata["entrystop"]
    with uproot.open(sidecar) as file:
        flavours = file["Truth"]["Jet_hadronFlavour"].array(entry_start=start, entry_stop=stop)
    if len(flavours) != len(n_jets) or np.any(ak.to_numpy(ak.num(flavours, axis=1)) != ak.to_numpy(n_jets)):
        raise ValueError(f"truth sidecar {sidecar} is not aligned with {filename} in entries {start}-{stop}")
    return flavour_names(jet_values(flavours, event_ids, jet_ids))


def fill(
    hists: dict[str, hist.Hist],
    category: dict[str, str],
    *,
    flavour: np.ndarray,
    osss: np.ndarray,
    weights: Mapping[str, np.ndarray],
    discs: Mapping[str, np.ndarray],
    pt: np.ndarray,
    abseta: np.ndarray,
) -> None:
    """Fill every histogram whose discriminators the model provides, once per systematic."""
    for name, needed in HISTOGRAM_DISCRIMINATORS.items():
        if any(disc not in discs for disc in needed):
            continue
        values = {disc: discs[disc] for disc in needed}
        if name == "BvsAll":
            values |= {"pt": pt, "abseta": abseta}
        elif name == "probe_pt":
            values = {"pt": pt}
        for systematic, weight in weights.items():
            hists[name].fill(**category, flavour=flavour, osss=osss, systematic=systematic, weight=weight, **values)
