"""Named SF variations: the central fit plus up_*/down_* entries, identical for every flavour.

- stat: central +- the pseudo-experiments' standard deviation sigma (toys.py); bins that
  keep SF = 1 get the configured unfitted uncertainty instead.
- contam: refit with the subtracted other flavours scaled by 1 +- the contamination variation
  (up_contam: more contamination).
- stats1, stats2: shape variations of the statistical uncertainty, central +- sigma (1 - 2u)
  and central +- sigma (1 - 6u(1 - u)), with u in [0, 1] the bin's discriminant coordinate.
  These are the linear and quadratic forms of the BTV hfstats1/hfstats2 uncertainties.
- any up/down pair of the run's ``systematic`` axis, e.g. jes (``jesUp``/``jesDown``) or
  ps_isr and ps_fsr (``PS_ISR_up``/``PS_ISR_down``, ...): refit with that entry's MC and
  the nominal data (templates.paired_systematics names them).

Every variation is clipped at 0, because an SF is a non-negative weight.
"""

from __future__ import annotations

import numpy as np

from advcalib.scalefactors.config import ScaleFactorConfig
from advcalib.scalefactors.fit import FitResult
from advcalib.scalefactors.templates import Templates
from advcalib.scalefactors.toys import FitFunction, statistical_uncertainty, toy_scale_factors


def derive_variations(
    templates: Templates,
    *,
    fit: FitFunction,
    central: FitResult,
    coordinate: np.ndarray,
    config: ScaleFactorConfig,
    shifted_templates: dict[str, dict[str, Templates]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Derive all variations keyed by name ("central", "up_stat", ...) and the statistical uncertainty.

    ``fit(templates, config=FitConfig, grouping=...)`` refits. ``coordinate`` has the grid's
    shape. ``shifted_templates`` maps a variation name to {"up": templates, "down": templates}
    whose MC replaces the nominal MC in the refit.
    """
    toys = toy_scale_factors(templates, fit=_with(fit, config.fit), grouping=central.grouping,
                             n_toys=config.n_toys, seed=config.seed)
    sigma = np.where(central.fitted, statistical_uncertainty(toys), config.fit.unfitted_uncertainty)
    sf = central.sf
    out: dict[str, np.ndarray] = {"central": sf}
    out["up_stat"], out["down_stat"] = sf + sigma, sf - sigma
    linear = 1.0 - 2.0 * coordinate
    quadratic = 1.0 - 6.0 * coordinate * (1.0 - coordinate)
    out["up_stats1"], out["down_stats1"] = sf + sigma * linear, sf - sigma * linear
    out["up_stats2"], out["down_stats2"] = sf + sigma * quadratic, sf - sigma * quadratic
    for name, factor in (("up_contam", 1 + config.contamination_variation), ("down_contam", 1 - config.contamination_variation)):
        varied = config.fit.model_copy(update={"contamination_scale": factor})
        out[name] = fit(templates, config=varied, grouping=central.grouping).sf
    for name, directions in (shifted_templates or {}).items():
        for direction, shifted in directions.items():
            out[f"{direction}_{name}"] = fit(templates.with_mc(shifted), config=config.fit, grouping=central.grouping).sf
    return {name: np.clip(values, 0.0, None) for name, values in out.items()}, sigma


def _with(fit: FitFunction, fit_config) -> FitFunction:
    def call(templates: Templates, *, grouping) -> FitResult:
        return fit(templates, config=fit_config, grouping=grouping)

    return call
