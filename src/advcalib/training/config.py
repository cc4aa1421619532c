"""Settings of a training run, validated and stored with every checkpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Flavour groups that may carry their own epsilon: b (b, bb, lepb), c, l (uds, g).
FLAVOUR_GROUPS: tuple[str, ...] = ("b", "c", "l")


class TrainConfig(BaseModel):
    """Hyperparameters, adversarial settings and robustness tracking of one training run."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["DeepJet", "DeepCSV"] = Field("DeepJet", description="network to train")
    epochs: int = Field(5, ge=1, description="number of epochs (total, including resumed ones)")
    batch_size: int = Field(1024, ge=2, description="jets per optimiser step")
    learning_rate: float = Field(1e-3, gt=0, description="initial Adam learning rate")
    lr_decay: float = Field(0.9, gt=0, le=1, description="learning-rate factor applied after every epoch")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of jets held out for validation")
    seed: int = Field(1, description="seed of the split, weight init, shuffling and dropout")
    adversarial: Literal["fgsm", "ngm"] | None = Field(None, description="attack used to craft training batches")
    epsilon: float = Field(0.01, ge=0, description="attack size in units of the per-feature scale")
    epsilon_per_flavour: dict[str, float] | None = Field(
        None, description="epsilon per flavour group b, c, l (replaces epsilon for those jets)"
    )
    adv_fraction: float = Field(1.0, gt=0, le=1, description="fraction of each batch replaced by adversarial jets")
    start_after: int = Field(0, ge=0, description="number of clean epochs before adversarial training starts")
    restrict_impact: float | None = Field(None, gt=0, description="cap of each shift as a fraction of |x|")
    track_epsilon: float = Field(0.01, gt=0, description="FGSM epsilon of the per-epoch robustness check")
    track_restrict_impact: float | None = Field(
        0.2, gt=0, description="cap of the per-epoch robustness check (None for no cap)"
    )

    @field_validator("epsilon_per_flavour")
    @classmethod
    def _known_flavours(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(FLAVOUR_GROUPS))
        if unknown:
            raise ValueError(f"unknown flavour groups {unknown} in epsilon_per_flavour; use b, c and l")
        negative = {k: v for k, v in value.items() if v < 0}
        if negative:
            raise ValueError(f"epsilon_per_flavour must be >= 0, got {negative}")
        return value


def parse_epsilon_per_flavour(text: str) -> dict[str, float]:
    """Parse ``b=0.01,c=0.005,l=0.02`` into ``{"b": 0.01, "c": 0.005, "l": 0.02}``."""
    result: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid per-flavour epsilon {item!r}; expected FLAVOUR=VALUE such as b=0.01")
        try:
            result[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"invalid epsilon {value!r} for flavour {key!r}; expected a number") from None
    return result
