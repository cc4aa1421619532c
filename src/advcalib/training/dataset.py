"""Jets for training and evaluation, read from PFNano files and cached as ``.npz``.

Inputs may be ROOT files, folders (every ``*.root`` inside, sorted) or a ``fileset.json``
as written by ``advcalib generate``. Of a fileset, only simulated datasets of the requested
role are read.  Jets enter with ``pt > PT_MIN`` and ``|eta| < ABS_ETA_MAX`` (the DeepJet
training phase space) and a DeepJet truth class (see :mod:`advcalib.training.labels`).
Built inputs of each file are cached in ``cache_dir`` under a key made of the file's
path, size and modification time, so a changed file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import awkward as ak
import numpy as np

from advcalib.training.labels import gather, class_counts, jet_labels
from advcalib.training.sample import JetSample
from advcalib.training.weights import reference_weights

logger = logging.getLogger(__name__)

#: Jet selection of the training phase space.
PT_MIN = 20.0
ABS_ETA_MAX = 2.5
#: Events read at once from one file (bounds the memory of input building).
EVENTS_PER_CHUNK = 20_000
#: Bump when the cached content changes so old caches are rebuilt.
CACHE_VERSION = 1


def resolve_files(sources: list[str | Path], *, role: str | None = "training") -> list[Path]:
    """Expand ROOT files, folders and fileset JSON files into a list of ROOT files.

    Raises:
        FileNotFoundError: for a path that does not exist or a folder without ROOT files.
        ValueError: for a fileset without simulated datasets of ``role``.
    """
    files: list[Path] = []
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f"input {source} not found; give ROOT files, folders or a fileset.json")
        if source.is_dir():
            found = sorted(source.glob("*.root"))
            if not found:
                raise FileNotFoundError(f"folder {source} contains no .root files")
            files.extend(found)
        elif source.suffix == ".json":
            files.extend(_fileset_files(source, role=role))
        else:
            files.append(source)
    return files


def _fileset_files(path: Path, *, role: str | None) -> list[Path]:
    fileset = json.loads(path.read_text())
    files = []
    for name, dataset in fileset.items():
        meta = dataset.get("metadata", {})
        if meta.get("is_data", False) or (role is not None and meta.get("role") != role):
            continue
        for file in dataset["files"]:
            resolved = Path(file) if Path(file).is_absolute() else path.parent / file
            files.append(resolved)
        logger.info("fileset %s: using dataset %s (%d files)", path, name, len(dataset["files"]))
    if not files:
        raise ValueError(f"fileset {path} has no simulated datasets with role {role!r}")
    return files


def _cache_key(path: Path, architecture: str) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{architecture}|{CACHE_VERSION}|{PT_MIN}|{ABS_ETA_MAX}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_events(path: Path, start: int, stop: int) -> ak.Array:
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    factory = NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager", entry_start=start, entry_stop=stop
    )
    return factory.events()


def _n_events(path: Path) -> int:
    import uproot

    with uproot.open(path) as file:
        if "Events" not in file:
            raise ValueError(f"{path} has no 'Events' tree; expected a PFNano file")
        return int(file["Events"].num_entries)


def _build_chunk(events: ak.Array, architecture: str) -> dict[str, np.ndarray]:
    """Build inputs, labels, pt and eta of the selected jets of one chunk of events."""
    from advcalib.inputs import build_deepcsv_inputs, build_deepjet_inputs

    jets = events.Jet
    selected = ak.local_index(jets, axis=1)[(jets.pt > PT_MIN) & (abs(jets.eta) < ABS_ETA_MAX)]
    if architecture == "DeepCSV":
        arrays = (build_deepcsv_inputs(events, selected),)
        # DeepCSV rows follow the selected jets event by event, as the DeepJet builder's do.
        event_index = np.repeat(np.arange(len(events)), ak.to_numpy(ak.num(selected, axis=1)))
        jet_index = ak.to_numpy(ak.flatten(selected, axis=1)).astype(np.int64)
    else:
        built = build_deepjet_inputs(events, selected)
        arrays = built.arrays()
        event_index, jet_index = built.event_index, built.jet_index
    out = {f"input{i}": a for i, a in enumerate(arrays)}
    out["labels"] = jet_labels(events, event_index, jet_index)
    out["pt"] = gather(jets.pt, event_index, jet_index).astype(np.float32)
    out["eta"] = gather(jets.eta, event_index, jet_index).astype(np.float32)
    return out


def _build_file(path: Path, architecture: str) -> dict[str, np.ndarray]:
    parts = []
    n_events = _n_events(path)
    for start in range(0, n_events, EVENTS_PER_CHUNK):
        parts.append(_build_chunk(_read_events(path, start, min(start + EVENTS_PER_CHUNK, n_events)), architecture))
    if not parts:
        raise ValueError(f"{path} contains no events")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def load_file(path: Path, *, architecture: str = "DeepJet", cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Return inputs (``input0`` ...), ``labels``, ``pt``, ``eta`` of one file, from the cache if valid."""
    cached = None if cache_dir is None else cache_dir / f"{path.stem}-{_cache_key(path, architecture)}.npz"
    if cached is not None and cached.exists():
        with np.load(cached) as data:
            return {key: data[key] for key in data.files}
    arrays = _build_file(path, architecture)
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **arrays)
        logger.info("cached inputs of %s in %s", path, cached)
    return arrays


def load_sample(
    files: list[Path],
    *,
    architecture: str = "DeepJet",
    cache_dir: Path | None = None,
    max_jets: int | None = None,
    weighted: bool = True,
) -> JetSample:
    """Read the jets of ``files`` into one sample with DeepJet classes and training weights.

    Jets without a truth class are dropped and counted in the log. ``max_jets`` keeps a
    fixed random subset of that many jets.  With ``weighted``, the
    weights reweight every class to the b-jet (pt, eta) distribution; else they are 1.

    Raises:
        ValueError: when no jet with a truth class remains.
    """
    parts = [load_file(path, architecture=architecture, cache_dir=cache_dir) for path in files]
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    labels = merged["labels"]
    counts = class_counts(labels)
    logger.info("jets per class: %s", counts)
    if counts["none"]:
        logger.info("dropping %d jets without a DeepJet truth class", counts["none"])
    keep = np.flatnonzero(labels >= 0)
    if max_jets is not None and max_jets < len(keep):
        # A fixed random subset, so a limit does not favour the first files.
        keep = np.sort(np.random.default_rng(0).choice(keep, size=max_jets, replace=False))
    if len(keep) == 0:
        raise ValueError(f"no jets with a DeepJet truth class in {len(files)} files; are these simulated PFNano files?")
    n_inputs = sum(1 for key in merged if key.startswith("input"))
    inputs = tuple(merged[f"input{i}"][keep] for i in range(n_inputs))
    labels, pt, eta = labels[keep], merged["pt"][keep], merged["eta"][keep]
    weights = reference_weights(labels, pt, eta) if weighted else np.ones(len(labels), dtype=np.float32)
    return JetSample(inputs=inputs, labels=labels, weights=weights, pt=pt, eta=eta)
