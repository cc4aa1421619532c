"""Chunk bookkeeping of a run: persist each finished chunk, resume, add chunks in a fixed order.

:class:`ResumableProcessor` wraps a coffea processor. For each chunk it runs the wrapped
processor, saves the output atomically as ``DIR/.chunks/<key>.coffea`` and returns only a
small record of the chunk. With ``resume`` a chunk whose file already exists is loaded
instead of processed. ``postprocess`` then loads the saved outputs and adds them sorted
by (dataset, file, first entry), so the result does not depend on the order in which
an executor finished the chunks. The same chunking therefore gives bit-for-bit the same
histograms on every executor and number of workers, and a resumed run gives the same
result as an uninterrupted one.

The key of a chunk is a hash of its dataset, file, file UUID, tree, entry range and the
dataset metadata. ``DIR/.chunks/manifest.json`` stores a fingerprint of the wrapped
processor's configuration (models and their files, selections, options), and resuming
with another configuration raises :class:`ResumeError` instead of mixing outputs.

coffea's own ``SimpleCheckpointer`` is not used because it serves only the Runner,
writes in place (an interrupted write leaves a partial file), hides write errors, does
not detect a changed configuration, and leaves the adding order to the executor.

NOTE: the workers write the chunk files, so on a batch system ``DIR`` must be on a file
system that the workers and the submitting machine share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coffea.processor import ProcessorABC, accumulate

from advcalib.atomic import save_atomic, write_json_atomic

logger = logging.getLogger(__name__)

#: Folder inside the output folder that contains the finished chunks.
CHUNK_DIR = ".chunks"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "advcalib-chunks"
MANIFEST_VERSION = 1
#: Output key of the chunk records that travel through the executor.
RECORDS_KEY = "chunk_records"


class ResumeError(ValueError):
    """Saved chunks that cannot be reused: another configuration or an unreadable file."""


@dataclass(frozen=True, order=True)
class ChunkRecord:
    """One finished chunk; records sort by dataset, file and first entry."""

    dataset: str
    filename: str
    entrystart: int
    entrystop: int
    key: str
    reused: bool


def chunk_key(metadata: dict[str, Any]) -> str:
    """Hash of the chunk's dataset, file, file UUID, tree, entry range and dataset metadata.

    A file replaced by another (new UUID) or a dataset whose metadata changed (e.g.
    ``is_data``) gets new keys, so its old outputs are never reused.
    """
    payload = json.dumps(metadata, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def configuration_fingerprint(processor: ProcessorABC) -> str:
    """Hash of the processor's configuration and of the model files it names.

    The configuration is the pickled processor, so every option takes part. A model
    given as a file path adds the file's size and modification time, so a retrained model
    saved under the same name invalidates the saved chunks.
    """
    digest = hashlib.sha256(type(processor).__qualname__.encode())
    try:
        digest.update(pickle.dumps(processor, protocol=4))
    except (pickle.PicklingError, TypeError, AttributeError):
        import cloudpickle

        digest.update(cloudpickle.dumps(processor))
    for source in sorted(str(value) for value in (getattr(processor, "models", None) or {}).values()):
        path = Path(source)
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class ChunkStore:
    """The folder of finished chunks of one output folder (``DIR/.chunks``)."""

    def __init__(self, out: str | Path) -> None:
        self.directory = Path(out) / CHUNK_DIR

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.coffea"

    def prepare(self, fingerprint: str, *, resume: bool) -> int:
        """Create the folder for a run; returns how many saved chunks a resume may reuse.

        Without ``resume`` the chunks of an earlier run are deleted. With ``resume`` the
        manifest must carry the same fingerprint, else :class:`ResumeError` is raised with what to do instead.
        A resume into a folder that contains other outputs but no manifest raises too, because
        nothing can be resumed and the outputs would be overwritten.
        """
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / MANIFEST
        if resume and manifest.is_file():
            saved = json.loads(manifest.read_text()).get("fingerprint")
            if saved != fingerprint:
                raise ResumeError(
                    f"the chunks saved in {self.directory} were made with another configuration (models, model files, "
                    "selections or options); rerun with the options of the interrupted run, or start over with --force "
                    "and without --resume"
                )
            count = len(list(self.directory.glob("*.coffea")))
            logger.info("resuming: %d finished chunks in %s", count, self.directory)
            return count
        if resume:
            if any(path.name != CHUNK_DIR for path in self.directory.parent.iterdir()):
                raise ResumeError(
                    f"--resume: {self.directory.parent} contains outputs but no saved chunks to resume from; "
                    "choose another --out, or pass --force without --resume to overwrite it"
                )
            logger.warning("--resume: no saved chunks in %s; processing every chunk", self.directory)
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        record = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "fingerprint": fingerprint}
        write_json_atomic(manifest, record)
        return 0

    def load(self, key: str) -> Any:
        from coffea.util import load

        path = self.path(key)
        try:
            return load(str(path))
        except Exception as error:  # noqa: BLE001 - lz4 and pickle raise many types for a damaged file
            raise ResumeError(
                f"saved chunk {path} cannot be read ({type(error).__name__}: {error}); delete it and rerun with --resume"
            ) from error

    def remove(self) -> None:
        """Delete the folder once the run's result is saved."""
        if self.directory.exists():
            shutil.rmtree(self.directory)


class ResumableProcessor(ProcessorABC):
    """Run ``processor`` chunk by chunk, saving each output in ``out/.chunks``.

    ``process`` returns ``{"chunk_records": {ChunkRecord}}`` (plus the wrapped output's
    ``cutflow``, so per-chunk checks of the executor still see it), and ``postprocess``
    returns the wrapped processor's postprocessed sum of the saved outputs.
    Call :meth:`prepare` once before the run. ``fingerprint`` replaces
    :func:`configuration_fingerprint` of ``processor``, for processors whose pickled form
    changes between runs of the same configuration.
    """

    def __init__(
        self, processor: ProcessorABC, *, out: str | Path, resume: bool = False, fingerprint: str | None = None
    ) -> None:
        self.processor = processor
        self.out = str(Path(out).resolve())  # workers may run in another working folder
        self.resume = resume
        self.fingerprint = fingerprint
        self.summary: dict[str, int] = {}

    @property
    def store(self) -> ChunkStore:
        return ChunkStore(self.out)

    def prepare(self) -> int:
        """Create or check the chunk folder; returns the number of chunks a resume may reuse."""
        fingerprint = self.fingerprint or configuration_fingerprint(self.processor)
        return self.store.prepare(fingerprint, resume=self.resume)

    def process(self, events: Any) -> dict[str, Any]:
        metadata = dict(events.metadata)
        key = chunk_key(metadata)
        store = self.store
        path = store.path(key)
        output = self._saved_output(store, key) if self.resume and path.is_file() else None
        reused = output is not None
        if not reused:
            output = self.processor.process(events)
            save_atomic(output, path)
        record = ChunkRecord(
            dataset=str(metadata["dataset"]),
            filename=str(metadata["filename"]),
            entrystart=int(metadata["entrystart"]),
            entrystop=int(metadata["entrystop"]),
            key=key,
            reused=reused,
        )
        receipt: dict[str, Any] = {RECORDS_KEY: {record}}
        if isinstance(output, dict) and "cutflow" in output:
            receipt["cutflow"] = output["cutflow"]
        return receipt

    @staticmethod
    def _saved_output(store: ChunkStore, key: str) -> Any | None:
        try:
            return store.load(key)
        except ResumeError as error:
            logger.warning("%s; processing the chunk again", error)
            return None

    def postprocess(self, accumulator: Any) -> Any:
        """Add the saved chunk outputs in sorted order and postprocess the sum."""
        records = sorted((accumulator or {}).get(RECORDS_KEY, set()))
        if not records:
            raise RuntimeError("no chunk was processed; check that the fileset lists files with events")
        store = self.store
        total = accumulate(store.load(record.key) for record in records)
        self.summary = {
            "chunks": len(records),
            "reused": sum(record.reused for record in records),
            "processed": sum(not record.reused for record in records),
        }
        logger.info("added %(chunks)d chunks: %(processed)d processed, %(reused)d reused from a previous run", self.summary)
        result = self.processor.postprocess(total)
        return total if result is None else result
