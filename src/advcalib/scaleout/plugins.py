"""Ship the advcalib package and model weights to Dask workers through Dask itself.

The package travels as a zip archive registered with distributed's ``UploadFile`` worker
plugin: each worker, including workers that join later, writes it to its local directory
and puts it first on ``sys.path``. Model files travel as bytes inside
:class:`ModelFilesPlugin`, which writes them to the worker's local directory. No path
on the client's filesystem needs to exist on the workers.

On a worker, :func:`resolve_model` maps a model source as written on the client (a path
or a packaged name such as ``"nominal"``) to the worker's copy, and :func:`cached_model`
loads each model once per process and keeps it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import UploadFile, WorkerPlugin

logger = logging.getLogger(__name__)

#: Names under which the plugins are registered; registering again replaces them.
PACKAGE_PLUGIN_NAME = "advcalib-package"
MODEL_PLUGIN_NAME = "advcalib-models"

#: Worker-local copies of shipped models in this process: client-side source -> local path.
_SHIPPED_MODELS: dict[str, str] = {}
#: Models loaded in this process: (local source, device, loader id) -> model object.
_MODEL_CACHE: dict[tuple[str, str | None, str], Any] = {}
_MODEL_LOADS: dict[str, int] = {}
_LOCK = threading.Lock()


def package_archive(out_dir: Path, *, package_dir: Path | None = None) -> Path:
    """Write the advcalib package (Python sources and data, without model weights) as a zip.

    Model weights under ``data/models`` are left out because :class:`ModelFilesPlugin`
    ships the ones a run uses. Returns the archive path ``out_dir/advcalib.zip``.
    """
    if package_dir is None:
        import advcalib

        package_dir = Path(advcalib.__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "advcalib.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(package_dir.rglob("*")):
            relative = path.relative_to(package_dir)
            if path.is_dir() or "__pycache__" in relative.parts or relative.parts[:2] == ("data", "models"):
                continue
            zipped.write(path, Path("advcalib") / relative)
    logger.info("packed %s into %s (%d bytes)", package_dir, archive, archive.stat().st_size)
    return archive


def package_plugin(archive: Path) -> UploadFile:
    """Worker plugin that uploads the package archive and imports advcalib from it."""
    return UploadFile(str(archive), load=True)


def model_file(source: str | Path) -> Path:
    """Find the file behind a model source: an existing path, or a packaged model name.

    Raises ``FileNotFoundError`` naming the source when neither exists.
    """
    path = Path(source)
    if path.is_file():
        return path.resolve()
    from advcalib.models.loading import packaged_model_path

    try:
        return packaged_model_path(str(source))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"model source {source!r} is not a file; {error}") from None


class ModelFilesPlugin(WorkerPlugin):
    """Worker plugin carrying model files as bytes; each worker writes its own copy.

    ``files`` maps the source string the processor uses on the client (a path or a
    packaged name) to the file's bytes and file name. The copies go to
    ``<worker local directory>/advcalib-models/<sha256 prefix>-<name>``, so two models
    with the same file name do not collide.
    """

    name = MODEL_PLUGIN_NAME

    def __init__(self, files: Mapping[str, tuple[str, bytes]]) -> None:
        self.files = dict(files)
        self._written: list[str] = []

    @classmethod
    def from_sources(cls, sources: Iterable[str | Path]) -> ModelFilesPlugin:
        files: dict[str, tuple[str, bytes]] = {}
        for source in sources:
            path = model_file(source)
            files[str(source)] = (path.name, path.read_bytes())
        return cls(files)

    def setup(self, worker: Any) -> None:
        target = Path(worker.local_directory) / "advcalib-models"
        target.mkdir(parents=True, exist_ok=True)
        for source, (filename, data) in self.files.items():
            digest = hashlib.sha256(data).hexdigest()[:16]
            path = target / f"{digest}-{filename}"
            if not path.exists():
                path.write_bytes(data)
            with _LOCK:
                _SHIPPED_MODELS[source] = str(path)
            self._written.append(source)
        logger.info("worker %s received %d model files in %s", worker.address, len(self.files), target)

    def teardown(self, worker: Any) -> None:
        prefix = str(Path(worker.local_directory))
        with _LOCK:
            for source in self._written:
                if _SHIPPED_MODELS.get(source, "").startswith(prefix):
                    del _SHIPPED_MODELS[source]


def resolve_model(source: str | Path) -> str:
    """Return the worker-local copy of a shipped model source, or the source unchanged.

    Outside a worker with :class:`ModelFilesPlugin`, or for a source that was not
    shipped, the source is returned as given, so the same processor runs locally.
    """
    with _LOCK:
        return _SHIPPED_MODELS.get(str(source), str(source))


def cached_model(
    source: str | Path,
    *,
    device: str | None = None,
    loader: Callable[..., Any] | None = None,
) -> Any:
    """Load a model once per process and return the kept object on later calls.

    ``source`` is resolved with :func:`resolve_model` first. ``loader`` defaults to
    ``advcalib.models.load_tagger``, which picks CUDA when the worker has a GPU and
    ``device`` is None. Threads of one worker share the object, so the model must be
    used for inference only.
    """
    if loader is None:
        from advcalib.models import load_tagger

        loader = load_tagger
    local = resolve_model(source)
    key = (local, device, f"{loader.__module__}.{loader.__qualname__}")
    with _LOCK:
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
        model = loader(local, device=device)
        _MODEL_CACHE[key] = model
        _MODEL_LOADS[local] = _MODEL_LOADS.get(local, 0) + 1
    logger.info("loaded model %s from %s", source, local)
    return model


def model_load_counts() -> dict[str, int]:
    """Number of loads per local model path in this process (each is 1 when caching works)."""
    with _LOCK:
        return dict(_MODEL_LOADS)


def shipped_models() -> dict[str, str]:
    """Client-side source -> worker-local path of the models shipped to this process."""
    with _LOCK:
        return dict(_SHIPPED_MODELS)
