"""Atomic writes of binary outputs: ``hists.coffea`` and the per-chunk outputs of a run.

``advcalib.outputs`` writes text (JSON, CSV, Markdown) atomically; this module adds the
pickled coffea outputs. Each writer fills a temporary file in the target folder, flushes
it to disk, then renames it over the target with ``os.replace``, which is atomic on
POSIX file systems. A reader, or a run interrupted at any point, therefore finds either
the old file or the complete new one, never a half-written file. The temporary file is
removed when writing fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from advcalib.outputs import write_json_atomic, write_text_atomic

__all__ = ["save_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; returns the path."""
    return _write_atomic(path, lambda handle: handle.write(data))


def save_atomic(output: Any, path: str | Path) -> Path:
    """Save ``output`` like ``coffea.util.save`` (lz4-compressed cloudpickle), atomically.

    ``coffea.util.load`` reads the file back. Returns the path.
    """
    import cloudpickle
    import lz4.frame

    def write(handle: BinaryIO) -> None:
        with lz4.frame.open(handle, "wb") as compressed:
            cloudpickle.dump(output, compressed)

    return _write_atomic(path, write)
