"""Derivation of one model's c-tag and b-tag SFs with all variations and working points."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hist
import numpy as np

from advcalib.scalefactors import btag, bvsl, ctag, payload, wp
from advcalib.scalefactors.config import ScaleFactorConfig
from advcalib.scalefactors.fit import FitResult
from advcalib.scalefactors.systematics import derive_variations
from advcalib.scalefactors.templates import Templates, mc_systematics

log = logging.getLogger(__name__)

#: Shape fits of every model, by name: the module with read_templates, fit and shape_coordinate.
SHAPE_FITS = {"ctag": ctag, "btag": btag, "bvsl": bvsl}


@dataclass
class ShapeScaleFactors:
    """One shape fit: its templates, central fit, named variations [F, *grid] and statistical uncertainty."""

    templates: Templates
    fit: FitResult
    variations: dict[str, np.ndarray]
    sigma: np.ndarray


@dataclass
class ModelScaleFactors:
    """All SFs of one model: c-tag, b-tag and BvsL shapes and WP SFs {systematic: {wp: [F, ...]}}."""

    model: str
    ctag: ShapeScaleFactors
    btag: ShapeScaleFactors
    bvsl: ShapeScaleFactors
    btag_wp: dict[str, dict[str, np.ndarray]]
    ctag_wp: dict[str, dict[str, np.ndarray]]


def derive_model(result: dict, model: str, *, config: ScaleFactorConfig) -> ModelScaleFactors:
    """Fit the c-tag, b-tag and BvsL shape SFs of ``model``, their variations and the WP SFs."""
    pairs = mc_systematics(result, nominal=config.nominal_systematic)
    shapes = {}
    for name, module in SHAPE_FITS.items():
        templates = module.read_templates(result, model=model, systematic=config.nominal_systematic)
        central = module.fit(templates, config=config.fit)
        log.info("%s %s fit: %d iterations, chi2 %.1f -> %.1f", model, name, central.n_iterations,
                 central.chi2[0], min(central.chi2))
        shifted = {
            name: {d: module.read_templates(result, model=model, systematic=s) for d, s in entries.items()}
            for name, entries in pairs.items()
        }
        variations, sigma = derive_variations(
            templates, fit=module.fit, central=central, coordinate=module.shape_coordinate(templates),
            config=config, shifted_templates=shifted,
        )
        shapes[name] = ShapeScaleFactors(templates, central, variations, sigma)
    return ModelScaleFactors(
        model=model,
        ctag=shapes["ctag"],
        btag=shapes["btag"],
        bvsl=shapes["bvsl"],
        btag_wp=_wp_variations(shapes["btag"], histogram="BvsAll", sum_axes=(2,), config=config),
        ctag_wp=_wp_variations(shapes["ctag"], histogram="CvsL_CvsB", sum_axes=(0, 1), config=config),
    )


def build_corrections(sfs: ModelScaleFactors) -> list:
    """Build the five corrections of the model's payload (see payload.py)."""
    ct, bt = sfs.ctag.templates, sfs.btag.templates
    bvsl_axis = hist.axis.Variable(sfs.bvsl.templates.edges[0], name="discriminant")
    cvl = hist.axis.Variable(ct.edges[0], name="CvL")
    cvb = hist.axis.Variable(ct.edges[1], name="CvB")
    abseta = hist.axis.Variable(bt.edges[1], name="abseta")
    pt = hist.axis.Variable(bt.edges[0], name="pt")
    disc = hist.axis.Variable(bt.edges[2], name="discriminant")
    btag_shape = {s: np.transpose(v, (0, 2, 1, 3)) for s, v in sfs.btag.variations.items()}
    btag_wp = {s: {p: np.transpose(v, (0, 2, 1)) for p, v in per.items()} for s, per in sfs.btag_wp.items()}
    return [
        payload.shape_correction("ctag_shape", sfs.ctag.variations, [cvl, cvb],
                                 description=f"c-tag shape SF of {sfs.model} in CvsL x CvsB"),
        payload.shape_correction("btag_shape", btag_shape, [abseta, pt, disc],
                                 description=f"b-tag shape SF of {sfs.model} in BvsAll, pt and |eta|"),
        payload.shape_correction("bvsl_shape", sfs.bvsl.variations, [bvsl_axis],
                                 description=f"BvsL shape SF of {sfs.model}, inclusive in pt and |eta|"),
        payload.wp_correction("btag_wp", btag_wp, [abseta, pt],
                              description=f"BvsAll working-point SF of {sfs.model} from the b-tag shape fit"),
        payload.wp_correction("ctag_wp", sfs.ctag_wp, [],
                              description=f"c-tag working-point SF of {sfs.model} from the c-tag shape fit"),
    ]


def _wp_variations(shape: ShapeScaleFactors, *, histogram: str, sum_axes: tuple[int, ...],
                   config: ScaleFactorConfig) -> dict[str, dict[str, np.ndarray]]:
    templates = shape.templates
    mc = templates.mc.value.sum(axis=0)
    points = wp.working_points(histogram)
    masks = {level: wp.pass_mask(point, axis_names=templates.axis_names, edges=templates.edges) for level, point in points.items()}
    variations = {
        systematic: {level: wp.wp_scale_factors(mc, sf, mask, sum_axes=sum_axes) for level, mask in masks.items()}
        for systematic, sf in shape.variations.items()
    }
    unfitted = wp.unfitted_cells(shape.fit.fitted, sum_axes=sum_axes)
    return wp.set_unfitted_uncertainty(variations, unfitted, uncertainty=config.fit.unfitted_uncertainty)
