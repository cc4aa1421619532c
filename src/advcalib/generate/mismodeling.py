"""Mismodeling knobs: how the pseudo-data differ from the simulation, per jet flavour.

Every knob is a relative shift, so 0 everywhere means the pseudo-data follow exactly the
distributions of the simulation (the closure configuration). A knob ``k`` multiplies the
simulated quantity by ``1 + k``:

- ``ip_resolution_core``: width of the Gaussian core of the track impact-parameter
  resolution. The stored uncertainties (``PFCands_d0Err``) keep the simulated value, as in
  real data where the track fit does not know about the mismodeling, so significances widen.
- ``ip_resolution_tail``: probability that a track falls into the wide resolution tail.
- ``sv_mass_scale``: secondary-vertex mass.
- ``track_multiplicity``: mean number of charged and neutral constituents.
- ``fake_vertex_rate``: rate of fake secondary vertices (material, V0 decays, random
  combinations) in jets of that flavour.
- ``soft_muon_rate``: rate of muons inside jets (semileptonic heavy-flavour decays for b and
  c, decays in flight for light jets).
- ``jet_energy_scale``: reconstructed jet pt.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Flavour classes the knobs are set for, keyed by ``Jet_hadronFlavour`` (0 light, 4 c, 5 b).
FLAVOUR_CLASSES: dict[str, int] = {"b": 5, "c": 4, "light": 0}


class Knobs(BaseModel):
    """Relative shifts applied to one jet flavour of the pseudo-data (0 = as simulated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ip_resolution_core: float = Field(0.0, description="relative change of the core impact-parameter resolution")
    ip_resolution_tail: float = Field(0.0, description="relative change of the probability of a resolution-tail track")
    sv_mass_scale: float = Field(0.0, description="relative change of the secondary-vertex mass")
    track_multiplicity: float = Field(0.0, description="relative change of the mean number of constituents")
    fake_vertex_rate: float = Field(0.0, description="relative change of the fake secondary-vertex rate")
    soft_muon_rate: float = Field(0.0, description="relative change of the rate of muons inside jets")
    jet_energy_scale: float = Field(0.0, description="relative change of the reconstructed jet pt")

    @field_validator("*")
    @classmethod
    def _above_minus_one(cls, value: float, info) -> float:
        if value <= -1.0:
            raise ValueError(f"{info.field_name} = {value} would make the quantity zero or negative; use a value above -1")
        return value

    def factor(self, name: str) -> float:
        """Multiplicative factor ``1 + knob`` of the knob ``name``."""
        return 1.0 + float(getattr(self, name))


class Mismodeling(BaseModel):
    """Knob settings of the pseudo-data, one set per flavour class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    b: Knobs = Field(default_factory=Knobs, description="knobs for b jets (hadronFlavour 5)")
    c: Knobs = Field(default_factory=Knobs, description="knobs for c jets (hadronFlavour 4)")
    light: Knobs = Field(default_factory=Knobs, description="knobs for light and gluon jets (hadronFlavour 0)")

    def for_flavour(self, name: str) -> Knobs:
        """Knobs of the flavour class ``name`` (``b``, ``c`` or ``light``)."""
        if name not in FLAVOUR_CLASSES:
            raise KeyError(f"unknown flavour class {name!r}; use one of {', '.join(FLAVOUR_CLASSES)}")
        return getattr(self, name)

    def is_zero(self) -> bool:
        """True when every knob of every flavour is 0 (pseudo-data distributed as the simulation)."""
        return all(value == 0.0 for name in FLAVOUR_CLASSES for value in self.for_flavour(name).model_dump().values())

    @classmethod
    def zero(cls) -> Mismodeling:
        """Knobs that leave the pseudo-data identical in distribution to the simulation."""
        return cls()


def write_mismodeling(path: Path, mismodeling: Mismodeling, *, closure: bool) -> None:
    """Write the applied knob settings as JSON: ``{"closure": bool, "knobs": {flavour: {knob: value}}}``."""
    payload = {"closure": closure, "knobs": mismodeling.model_dump()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
