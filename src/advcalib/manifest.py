"""The manifest of an output folder: the files that the last run in it wrote.

A run writes ``OUT/manifest.json`` atomically as its last file. It lists, relative to
``OUT``, every file that the run created or replaced: any file whose inode, size or
modification time differs from the snapshot taken before the first step. The listing
therefore does not depend on each step reporting its files. A rerun with ``--force``
removes exactly the listed files, so no output of the earlier run can pass for one of
the new run. Files that no manifest lists (notes, inputs, outputs of other tools) are
left in place and named in a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from advcalib.atomic import write_json_atomic

logger = logging.getLogger(__name__)

#: File name of the manifest inside the output folder.
MANIFEST_NAME = "manifest.json"
#: Value of the manifest's ``format`` key.
MANIFEST_FORMAT = "advcalib-run-manifest"

#: Identity of a file in a snapshot: inode, size in bytes and modification time in ns.
FileStamp = tuple[int, int, int]


def snapshot(folder: Path) -> dict[str, FileStamp]:
    """Return the stamp of every file below ``folder``, keyed by its relative POSIX path."""
    stamps: dict[str, FileStamp] = {}
    if not folder.is_dir():
        return stamps
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            status = path.stat()
            stamps[path.relative_to(folder).as_posix()] = (status.st_ino, status.st_size, status.st_mtime_ns)
    return stamps


def written_since(folder: Path, before: Mapping[str, FileStamp]) -> list[str]:
    """Return the relative paths of the files below ``folder`` created or replaced since ``before``.

    The manifest itself is never listed.
    """
    after = snapshot(folder)
    return sorted(name for name, stamp in after.items() if name != MANIFEST_NAME and before.get(name) != stamp)


def write_manifest(folder: Path, files: Sequence[str], *, failed_steps: Iterable[str] = ()) -> Path:
    """Write ``folder/manifest.json`` listing ``files`` (relative POSIX paths) atomically."""
    payload = {"format": MANIFEST_FORMAT, "version": 1, "files": sorted(files), "failed_steps": sorted(failed_steps)}
    return write_json_atomic(folder / MANIFEST_NAME, payload)


def read_manifest(folder: Path) -> list[str] | None:
    """Return the files listed in ``folder/manifest.json``, or None when the folder has no valid manifest.

    An unreadable or foreign manifest gives None and a warning, so that nothing is removed
    on its account.
    """
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        payload: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("%s is not readable JSON (%s); no file of an earlier run is removed", path, error)
        return None
    files = payload.get("files") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != MANIFEST_FORMAT or not isinstance(files, list):
        logger.warning("%s is not an advcalib run manifest; no file of an earlier run is removed", path)
        return None
    return [name for name in files if isinstance(name, str)]


def _resolve_inside(folder: Path, name: str) -> Path | None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    return folder.joinpath(*relative.parts)


def remove_listed(folder: Path) -> list[Path]:
    """Remove the files that ``folder/manifest.json`` lists, then the manifest; return the removed files.

    Entries outside ``folder`` (absolute paths, ``..``) are skipped with a warning.
    Sub-folders that become empty, such as ``plots/``, are removed as well. Without a
    valid manifest nothing is removed.
    """
    listed = read_manifest(folder)
    if listed is None:
        return []
    removed: list[Path] = []
    for name in listed:
        path = _resolve_inside(folder, name)
        if path is None:
            logger.warning("%s lists %r, which is outside %s; not removed", folder / MANIFEST_NAME, name, folder)
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
            _remove_empty_parents(path.parent, folder)
    (folder / MANIFEST_NAME).unlink()
    return removed


def _remove_empty_parents(path: Path, folder: Path) -> None:
    while path != folder and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
