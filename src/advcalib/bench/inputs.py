"""Input building rates: DeepJet inputs from PF candidates and from stored ``Jet_DeepJet_*`` branches."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import awkward as ak

from advcalib.inputs import DeepJetInputs, build_deepjet_inputs

logger = logging.getLogger(__name__)


def read_events(path: Path) -> ak.Array:
    """Read every event of a PFNano file eagerly, so that timed code does no file reading."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()


def measure_input_building(path: Path, *, source: str, repeats: int) -> tuple[dict[str, Any], DeepJetInputs]:
    """Time ``build_deepjet_inputs`` on all jets of ``path`` from ``source``; best of ``repeats``.

    Returns the measurement (jets, events, seconds, jets/s) and the inputs built.
    """
    events = read_events(path)
    best, inputs = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        inputs = build_deepjet_inputs(events, source=source)
        best = min(best, time.perf_counter() - start)
    n_jets = len(inputs)
    row = {
        "source": source,
        "file": path.name,
        "events": len(events),
        "jets": n_jets,
        "seconds": best,
        "jets_per_s": n_jets / best if best > 0 else None,
    }
    logger.info("input building from %s: %d jets in %.3f s", source, n_jets, best)
    return row, inputs
