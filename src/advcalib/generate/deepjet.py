"""Optional ``Jet_DeepJet_*`` input branches, built by :mod:`advcalib.inputs` from the candidates.

The chunk is written to a temporary file, read back with coffea's ``PFNanoAODSchema`` and
passed to ``build_deepjet_inputs(events, source="pfcands")``, so the stored inputs are
exactly what the input builder derives from the written ``JetPFCands``, ``PFCands``,
``JetSVs`` and ``SV`` branches.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import numpy as np

from advcalib.generate.chunk import Chunk
from advcalib.generate.writer import TreeWriter, chunk_arrays


def add_deepjet_inputs(chunk: Chunk, event_ids: dict[str, np.ndarray], scratch: Path) -> None:
    """Add the ``DeepJet_*`` fields to ``chunk``'s Jet collection; ``scratch`` is removed afterwards."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from advcalib.inputs import build_deepjet_inputs, deepjet_branches

    counts, fields = chunk.collections["Jet"]
    if chunk.n_events == 0:
        return
    try:
        with TreeWriter(scratch) as writer:
            writer.write(chunk_arrays(chunk, event_ids=event_ids))
        with warnings.catch_warnings():
            # Pseudo-data have no generator-level collections; coffea warns about their indices.
            warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)
            events = NanoEventsFactory.from_root({str(scratch): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()
        inputs = build_deepjet_inputs(events, source="pfcands")
        for name, values in deepjet_branches(inputs, counts).items():
            fields[name.removeprefix("Jet_")] = ak.to_numpy(ak.flatten(values))
    finally:
        scratch.unlink(missing_ok=True)
