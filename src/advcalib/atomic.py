"""Atomic writes of run outputs: text, JSON and the pickled coffea outputs.

Each writer fills a temporary file in the target folder, flushes it to disk, then renames
it over the target with ``os.replace``, which is atomic on POSIX file systems. A reader,
or a run interrupted at any point, therefore finds either the old file or the complete
new one, never a half-written file. The temporary file is removed when writing fails.

The new file gets the permissions a plain ``open`` gives (0666 minus the umask). This is
why the run writes through these functions rather than ``advcalib.outputs.write_*_atomic``,
whose files keep the owner-only mode 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["save_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    # os.umask can only be read by setting it, so read it once at import, before any worker thread starts.
    current = os.umask(0o022)
    os.umask(current)
    return current


#: Mode of every file written here: what ``open`` would create.
FILE_MODE = 0o666 & ~_umask()


def _write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; returns the path."""
    return _write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` through a temporary file and a rename; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON; NaN and infinity raise ``ValueError`` because strict JSON has neither."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


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
