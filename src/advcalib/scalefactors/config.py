"""Settings of the scale-factor derivation, as pydantic models that reject unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FitConfig(BaseModel):
    """Settings of one iterative shape fit (c-tag or b-tag)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(
        default=0.7, gt=0.0, le=1.0, description="damping of each update: SF += rate * (ratio - SF)"
    )
    max_iterations: int = Field(default=50, ge=1, description="upper limit on full passes over the regions")
    tolerance: float = Field(
        default=1e-4, ge=0.0, description="stop when the global chi2 improves by less than this relative amount"
    )
    max_relative_uncertainty: float = Field(
        default=0.2,
        gt=0.0,
        description="bins are merged until the expected relative statistical uncertainty of the ratio is below this",
    )
    min_purity: float = Field(
        default=0.1, ge=0.0, le=1.0, description="groups whose target-flavour fraction of the MC is lower keep SF = 1"
    )
    min_data_events: float = Field(
        default=10.0, ge=0.0, description="groups with fewer OS-SS data events than this keep SF = 1"
    )
    unfitted_uncertainty: float = Field(
        default=0.5, gt=0.0, description="absolute statistical uncertainty given to groups that keep SF = 1"
    )
    contamination_scale: float = Field(
        default=1.0, gt=0.0, description="factor on the subtracted other flavours (1.2 / 0.8 for the systematic)"
    )
    preserve_flavour_yield: bool = Field(
        default=True,
        description="rescale each flavour's fitted SFs so its MC yield in its target region is unchanged",
    )


class ScaleFactorConfig(BaseModel):
    """Settings of the whole derivation: fits, toys and systematic variations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fit: FitConfig = Field(default_factory=FitConfig, description="settings of the iterative fits")
    n_toys: int = Field(default=100, ge=2, description="pseudo-experiments for the statistical uncertainty")
    seed: int = Field(default=1, description="seed of the pseudo-experiments")
    contamination_variation: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="relative shift of the subtracted other flavours for up/down_contam"
    )
    nominal_systematic: str = Field(default="nominal", description="entry of the 'systematic' axis used for the fit")
    plots: bool = Field(default=True, description="write SF maps and data/MC plots")
