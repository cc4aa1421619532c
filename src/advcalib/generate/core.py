"""``generate()``: simulate every dataset of a preset and write files, truth and fileset.json."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from advcalib.generate.chunk import Chunk, merge_chunks, simulate_chunk
from advcalib.generate.mismodeling import Mismodeling, write_mismodeling
from advcalib.generate.presets import DatasetSpec, Preset, load_preset
from advcalib.generate.processes import CROSS_SECTIONS
from advcalib.generate.writer import TreeWriter, chunk_arrays, truth_arrays

log = logging.getLogger(__name__)

#: Run number of the pseudo-data (a 2018 run); simulation uses run 1 as CMS does.
DATA_RUN, MC_RUN = 317_000, 1
EVENTS_PER_LUMI_BLOCK = 1000


def _rng(seed: int, dataset: str, chunk: int) -> np.random.Generator:
    """Generator of one chunk: independent of the order in which datasets are produced."""
    return np.random.default_rng([seed, zlib.crc32(dataset.encode()), chunk])


def _chunk_sizes(total: int, chunk_size: int) -> Iterator[int]:
    """Chunk sizes adding up to ``total``; a single empty chunk for 0, so every file gets its tree."""
    if total <= 0:
        yield 0
    while total > 0:
        yield min(total, chunk_size)
        total -= chunk_size


def _event_ids(first: int, n: int, run: int) -> dict[str, np.ndarray]:
    event = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    return {"run": np.full(n, run), "luminosityBlock": event // EVENTS_PER_LUMI_BLOCK + 1, "event": event}


def _write_events(chunks: list[Chunk], writer: TreeWriter, truth: TreeWriter | None, *, first_event: int, run: int,
                  deepjet_scratch: Path | None) -> int:
    """Write ``chunks`` as one basket per branch (one ``extend``); returns the number of events written."""
    chunk = merge_chunks(chunks)
    event_ids = _event_ids(first_event, chunk.n_events, run)
    if deepjet_scratch is not None:
        from advcalib.generate.deepjet import add_deepjet_inputs

        add_deepjet_inputs(chunk, event_ids, deepjet_scratch)
    writer.write(chunk_arrays(chunk, event_ids=event_ids))
    if truth is not None:
        truth.write(truth_arrays(chunk))
    return chunk.n_events


def _write_dataset(name: str, spec: DatasetSpec, *, n_total: int, out_dir: Path, seed: int, chunk_size: int,
                   mismodeling: Mismodeling | None, deepjet_inputs: bool) -> dict:
    """Simulate and write one dataset; returns its file entry, truth entry and event counts.

    Chunks that a generator filter thinned out are collected until they hold ``chunk_size``
    events and written together, because every ``extend`` costs a fixed amount per branch.
    Collecting them changes no value in the file, only the basket boundaries.
    """
    is_data = mismodeling is not None
    run = DATA_RUN if is_data else MC_RUN
    path = out_dir / f"{name}.root"
    truth_path = out_dir / f"{name}_truth.root"
    sizes = list(_chunk_sizes(n_total, chunk_size))
    # Room for one basket per chunk, so uproot never has to move the tree metadata.
    capacity = len(sizes) + 2
    written = generated = 0
    pending: list[Chunk] = []
    empty: Chunk | None = None
    writer = TreeWriter(path, basket_capacity=capacity)
    truth = TreeWriter(truth_path, tree="Truth", basket_capacity=capacity) if is_data else None

    def flush(chunks: list[Chunk]) -> int:
        scratch = out_dir / f".{name}_{writer.baskets}.scratch.root" if deepjet_inputs else None
        return _write_events(chunks, writer, truth, first_event=written, run=run, deepjet_scratch=scratch)

    try:
        for index, size in enumerate(sizes):
            chunk = simulate_chunk(_rng(seed, name, index), process=spec.process, n=size, mismodeling=mismodeling,
                                   is_data=is_data, soft_muon=spec.filter == "soft_muon")
            generated += size
            if chunk.n_events == 0:
                empty = chunk
                continue
            pending.append(chunk)
            if sum(c.n_events for c in pending) >= chunk_size:
                written += flush(pending)
                pending = []
        if pending:
            written += flush(pending)
        if writer.entries == 0 and empty is not None:
            # A dataset without events still gets its (empty) tree with every branch.
            flush([empty])
    finally:
        writer.close()
        if truth is not None:
            truth.close()
    log.info("%s: %d events written of %d generated -> %s", name, written, generated, path)
    return {"path": path, "truth": truth_path if is_data else None, "written": written, "generated": generated}


def _mc_metadata(spec: DatasetSpec, result: dict) -> dict:
    xsec = spec.xsec or CROSS_SECTIONS[spec.process]
    return {
        "is_data": False, "process": spec.process, "role": spec.role, "xsec": xsec,
        # genWeight is 1 for every event, so sumw counts all generated events, filtered or not.
        "sumw": float(result["generated"]), "generated_events": result["generated"], "events": result["written"],
        "filter": spec.filter, "filter_efficiency": result["written"] / max(result["generated"], 1),
    }


def _data_events(spec: DatasetSpec, preset: Preset, seed: int) -> int:
    xsec = spec.xsec or CROSS_SECTIONS[spec.process]
    expected = xsec * preset.lumi
    return int(np.random.default_rng([seed, zlib.crc32(f"data_{spec.name}".encode()), 2**31]).poisson(expected))


def generate(preset: str | Path | Preset, out_dir: str | Path, *, seed: int = 1, events: int | None = None,
             deepjet_inputs: bool = False, closure: bool | None = None) -> Path:
    """Generate the simulated and pseudo-data datasets of ``preset`` into ``out_dir``.

    ``preset`` is ``"demo"``, ``"full"``, a YAML path or a :class:`Preset`. ``events`` rescales
    the preset (the largest dataset gets ``events`` generated events, the rest and the data
    luminosity follow in proportion). ``closure=True`` sets every mismodeling knob to 0.
    ``deepjet_inputs`` adds the ``Jet_DeepJet_*`` input branches built by
    :func:`advcalib.inputs.build_deepjet_inputs`. Existing output files are overwritten;
    a file in ``out_dir`` that this preset does not produce is left alone.

    Returns the path of ``out_dir/fileset.json``.
    """
    config = preset if isinstance(preset, Preset) else load_preset(preset)
    if events is not None:
        config = config.scaled(events)
    if closure is not None:
        config = config.model_copy(update={"closure": closure})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mismodeling = config.applied_mismodeling()
    common = {"out_dir": out, "seed": seed, "chunk_size": config.chunk_size, "deepjet_inputs": deepjet_inputs}
    fileset: dict[str, dict] = {}
    for spec in config.datasets:
        result = _write_dataset(spec.name, spec, n_total=spec.events, mismodeling=None, **common)
        fileset[spec.name] = {"files": {result["path"].name: "Events"}, "metadata": _mc_metadata(spec, result)}
    for spec in (d for d in config.datasets if d.data):
        name = f"data_{spec.name}"
        result = _write_dataset(name, spec, n_total=_data_events(spec, config, seed), mismodeling=mismodeling, **common)
        fileset[name] = {"files": {result["path"].name: "Events"}, "metadata": {
            "is_data": True, "process": "data", "source_process": spec.process, "role": "calibration",
            "lumi": config.lumi, "truth": {result["path"].name: result["truth"].name}, "events": result["written"],
            "generated_events": result["generated"],
            "filter": spec.filter,
        }}
    write_mismodeling(out / "mismodeling.json", mismodeling, closure=config.closure)
    path = out / "fileset.json"
    path.write_text(json.dumps(fileset, indent=2) + "\n")
    log.info("wrote %d datasets to %s", len(fileset), path)
    return path
