"""Generator presets: which processes to simulate, how many events, the pseudo-data luminosity.

A preset is a YAML file validated by :class:`Preset`; unknown keys are rejected so a typo
cannot silently fall back to a default. ``demo`` and ``full`` ship with the package in
``advcalib/generate/presets/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advcalib.generate.mismodeling import Mismodeling

PRESET_DIR = Path(__file__).resolve().parent / "presets"

ProcessName = Literal["dy", "wjets", "wcharm", "ttbar_semilep", "ttbar_dilep", "qcd"]


class DatasetSpec(BaseModel):
    """One simulated dataset of a preset, and optionally its pseudo-data counterpart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="dataset name in fileset.json; the pseudo-data are called data_<name>")
    process: ProcessName = Field(description="physics process, see docs/generator.md")
    role: Literal["calibration", "training"] = Field(description="calibration selections or tagger training")
    events: int = Field(gt=0, description="simulated events to generate (before the generator filter)")
    data: bool = Field(False, description="also write pseudo-data of this process at the preset luminosity")
    filter: Literal["none", "soft_muon"] = Field(
        "none", description="keep only events with a muon inside a jet; sumw still counts every generated event"
    )
    xsec: float | None = Field(None, gt=0, description="cross-section in pb; default: the process's built-in value")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value.replace("_", "").isalnum() or value.startswith("data_"):
            raise ValueError(f"dataset name {value!r} must be letters, digits and '_' and must not start with 'data_'")
        return value

    @model_validator(mode="after")
    def _data_only_for_calibration(self) -> DatasetSpec:
        if self.data and self.role != "calibration":
            raise ValueError(f"dataset {self.name!r}: pseudo-data (data: true) exist only for role 'calibration'")
        return self


class Preset(BaseModel):
    """A complete generator configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="preset name, recorded in the output")
    lumi: float = Field(gt=0, description="integrated luminosity of the pseudo-data in /pb")
    chunk_size: int = Field(25_000, gt=0, description="generated events per chunk (bounds the memory)")
    closure: bool = Field(False, description="set every mismodeling knob to 0: pseudo-data distributed as the simulation")
    mismodeling: Mismodeling = Field(default_factory=Mismodeling, description="knobs of the pseudo-data per flavour")
    datasets: tuple[DatasetSpec, ...] = Field(min_length=1, description="simulated datasets")

    @model_validator(mode="after")
    def _unique_names(self) -> Preset:
        names = [d.name for d in self.datasets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"dataset names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def applied_mismodeling(self) -> Mismodeling:
        """Knobs applied to the pseudo-data: all 0 when ``closure`` is set."""
        return Mismodeling.zero() if self.closure else self.mismodeling

    def scaled(self, events: int) -> Preset:
        """Copy with the largest dataset at ``events`` generated events and everything else in proportion.

        The other datasets and the pseudo-data luminosity scale by the same factor, so the
        mixture keeps its proportions. Each dataset keeps at least one event.
        """
        if events <= 0:
            raise ValueError(f"events must be positive, got {events}")
        factor = events / max(d.events for d in self.datasets)
        datasets = tuple(d.model_copy(update={"events": max(1, round(d.events * factor))}) for d in self.datasets)
        return self.model_copy(update={"datasets": datasets, "lumi": self.lumi * factor})


def builtin_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(preset: str | Path) -> Preset:
    """Load a built-in preset by name (``demo``, ``full``) or a preset YAML file by path.

    Raises ``FileNotFoundError`` for an unknown name or a missing file and ``ValueError``
    naming the file and the offending keys for an invalid one.
    """
    path = Path(preset)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            raise FileNotFoundError(
                f"unknown preset {str(preset)!r}; use one of {', '.join(builtin_presets())} or a path to a YAML file"
            )
    if not path.exists():
        raise FileNotFoundError(f"preset file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"preset file {path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"preset file {path} must contain a mapping of preset keys, got {type(raw).__name__}")
    try:
        return Preset.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"invalid preset file {path}:\n{error}") from error
