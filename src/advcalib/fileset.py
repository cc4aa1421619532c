"""Fileset of a calibration run: datasets, their files and metadata, validated with pydantic.

The JSON layout is coffea's, with the metadata advcalib needs::

    {"dy": {"files": {"dy_0.root": "Events"},
            "metadata": {"is_data": false, "xsec": 6077.2, "sumw": 1.2e6}},
     "data_dy": {"files": ["data_0.root"],
                 "metadata": {"is_data": true, "lumi": 100.0,
                              "truth": {"data_0.root": "data_0_truth.root"}}}}

Relative file paths are relative to the fileset file. ``files`` may be a list (tree
``Events``) or a mapping from path to tree name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

#: Metadata keys that coffea's Runner sets itself and rejects in a fileset.
RESERVED_METADATA = frozenset(
    {"filename", "clusters", "metadata", "dataset", "entrystart", "numentries", "preload", "fileuuid", "uuid", "treename", "entrystop"}
)


class FilesetError(ValueError):
    """Invalid fileset; the message names the file and the dataset."""


class DatasetMetadata(BaseModel):
    """Metadata of one dataset. Keys beyond these are kept and passed to the processor."""

    model_config = ConfigDict(extra="allow")

    is_data: StrictBool = Field(description="true for collision data and pseudo-data, false for simulation")
    process: str | None = Field(None, description="physics process, for labels")
    role: Literal["calibration", "training"] = Field("calibration", description="only calibration datasets are processed")
    xsec: float | None = Field(None, gt=0, description="cross-section in pb (simulation)")
    sumw: float | None = Field(None, gt=0, description="sum of genWeight over all generated events (simulation)")
    lumi: float | None = Field(None, gt=0, description="integrated luminosity in /pb (data)")
    truth: dict[str, str] | None = Field(None, description="data file -> truth sidecar file (pseudo-data)")

    @model_validator(mode="after")
    def _check_kind(self) -> DatasetMetadata:
        if not self.is_data and self.xsec is None:
            raise ValueError("simulation needs 'xsec' (pb) to be normalised")
        if not self.is_data and self.truth:
            raise ValueError("'truth' sidecars belong to pseudo-data (is_data: true)")
        reserved = sorted(RESERVED_METADATA & set(self.model_extra or {}))
        if reserved:
            raise ValueError(f"metadata keys {', '.join(reserved)} are reserved by coffea; rename them")
        return self


class Dataset(BaseModel):
    """Files of one dataset (path -> tree name) and its metadata."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(min_length=1, description="file path -> tree name")
    metadata: DatasetMetadata

    @field_validator("files", mode="before")
    @classmethod
    def _list_to_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {path: "Events" for path in value}
        return value


def load_fileset(path: str | Path, *, check_files: bool = True) -> dict[str, Dataset]:
    """Read and validate a fileset JSON; file paths come back absolute.

    Raises :class:`FilesetError` naming the fileset and dataset for invalid JSON, invalid
    metadata, or (with ``check_files``) a local file or truth sidecar that does not exist.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FilesetError(f"fileset {path} not found") from None
    except json.JSONDecodeError as error:
        raise FilesetError(f"fileset {path} is not valid JSON: {error}") from None
    if not isinstance(raw, dict) or not raw:
        raise FilesetError(f"fileset {path} must be a non-empty mapping of dataset name to dataset")
    return {name: _dataset(name, entry, path, check_files=check_files) for name, entry in raw.items()}


def _dataset(name: str, entry: Any, fileset: Path, *, check_files: bool) -> Dataset:
    try:
        dataset = Dataset.model_validate(entry)
    except ValidationError as error:
        raise FilesetError(f"fileset {fileset}: dataset {name!r} is invalid: {_describe(error)}") from None
    base = fileset.resolve().parent
    files = {_absolute(file, base): tree for file, tree in dataset.files.items()}
    truth = dataset.metadata.truth
    if truth:
        truth = {_absolute(data, base): _absolute(sidecar, base) for data, sidecar in truth.items()}
        unknown = sorted(set(truth) - set(files))
        if unknown:
            raise FilesetError(f"fileset {fileset}: dataset {name!r}: truth sidecars for files not in the dataset: {', '.join(unknown)}")
    if check_files:
        for file in [*files, *(truth or {}).values()]:
            if "://" not in file and not Path(file).is_file():
                raise FilesetError(f"fileset {fileset}: dataset {name!r}: file {file} not found")
    metadata = dataset.metadata.model_copy(update={"truth": truth})
    return Dataset(files=files, metadata=metadata)


def _absolute(file: str, base: Path) -> str:
    if "://" in file:
        return file
    path = Path(file).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"{location}: {item['msg']}" if location else item["msg"])
    return "; ".join(parts)


def coffea_fileset(datasets: dict[str, Dataset], *, limit_files: int | None = None) -> dict[str, dict[str, Any]]:
    """Convert datasets to the mapping coffea's Runner takes, with at most ``limit_files`` files each."""
    fileset = {}
    for name, dataset in datasets.items():
        files = dict(list(dataset.files.items())[:limit_files]) if limit_files else dict(dataset.files)
        fileset[name] = {"files": files, "metadata": dataset.metadata.model_dump()}
    return fileset
