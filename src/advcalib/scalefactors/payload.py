"""correctionlib payload of one model's scale factors: ``sf_<model>.json.gz``.

Corrections (BTV-like layout, every systematic defined for every flavour):

- ``ctag_shape``: systematic, flavor (hadronFlavour 0/4/5), CvL, CvB
- ``btag_shape``: systematic, flavor, abseta, pt, discriminant (BvsAll)
- ``bvsl_shape``: systematic, flavor, discriminant (BvsL)
- ``btag_wp``: systematic, working_point ("L", "M", "T"), flavor, abseta, pt
- ``ctag_wp``: systematic, working_point, flavor

Real inputs outside the binning are clamped to the first or last bin, so the default
discriminator value -1 gets the SF of the lowest bin. The file carries no ``$schema`` key,
so that correctionlib releases whose schema models predate that field can read it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import hist
import numpy as np
from correctionlib import schemav2
from correctionlib.convert import from_histogram

from advcalib.atomic import write_bytes_atomic
from advcalib.histograms import HADRON_FLAVOUR
from advcalib.scalefactors.templates import MC_FLAVOURS

#: Version written into every correction; raise it when the payload layout changes.
PAYLOAD_VERSION = 1

#: Flavours in the order of the payload's ``flavor`` categories, and their array index.
_FLAVOR_CODES = sorted(HADRON_FLAVOUR.values())
_FLAVOUR_INDEX = [MC_FLAVOURS.index(next(f for f, code in HADRON_FLAVOUR.items() if code == c)) for c in _FLAVOR_CODES]

_DESCRIPTIONS = {
    "flavor": "hadronFlavour of the jet: 5 (b), 4 (c), 0 (light and gluon)",
    "CvL": "DeepJet CvsL discriminant",
    "CvB": "DeepJet CvsB discriminant",
    "discriminant": "DeepJet BvsAll discriminant (b + bb + lepb); BvsL in bvsl_shape",
    "abseta": "|eta| of the jet",
    "pt": "jet pt in GeV",
    "working_point": "working point: L, M or T",
}


def shape_correction(
    name: str, variations: dict[str, np.ndarray], value_axes: list[hist.axis.AxisProtocol], *, description: str
) -> schemav2.Correction:
    """Correction from SF arrays [F, *value_axes] (flavours in MC_FLAVOURS order) per systematic."""
    return _convert(name, variations, value_axes, description=description)


def wp_correction(
    name: str, variations: dict[str, dict[str, np.ndarray]], value_axes: list[hist.axis.AxisProtocol], *,
    description: str,
) -> schemav2.Correction:
    """Correction from WP SFs {systematic: {wp: [F, *value_axes]}} with a ``working_point`` input first."""
    points = list(next(iter(variations.values())))
    stacked = {s: np.stack([per_wp[p] for p in points]) for s, per_wp in variations.items()}
    wp_axis = hist.axis.StrCategory(points, name="working_point")
    return _convert(name, stacked, [wp_axis, *value_axes], description=description, flavour_axis=1)


def correction_set(model: str, corrections: list[schemav2.Correction]) -> schemav2.CorrectionSet:
    """CorrectionSet of one model's corrections."""
    return schemav2.CorrectionSet(
        schema_version=2,
        description=f"advcalib flavour-tagging scale factors of model '{model}'",
        corrections=corrections,
    )


def write_payload(cset: schemav2.CorrectionSet, path: str | Path) -> Path:
    """Write ``cset`` as gzipped JSON without the ``$schema`` key, atomically (temporary file, then rename).

    ``mtime=0`` in the gzip header makes the file depend on the SFs only, not on when it was written.
    """
    text = cset.model_dump_json(exclude={"schema_url"}, exclude_none=True)
    return write_bytes_atomic(path, gzip.compress(text.encode(), mtime=0))


def _convert(name, variations, value_axes, *, description, flavour_axis=0) -> schemav2.Correction:
    systematics = list(variations)
    axes = [
        hist.axis.StrCategory(systematics, name="systematic"),
        *value_axes[:flavour_axis],
        hist.axis.IntCategory(_FLAVOR_CODES, name="flavor"),
        *value_axes[flavour_axis:],
    ]
    h = hist.Hist(*axes, storage=hist.storage.Double(), name=name, label="weight")
    for i, systematic in enumerate(systematics):
        values = np.take(variations[systematic], _FLAVOUR_INDEX, axis=flavour_axis)
        h.view()[i] = values
    if not np.all(np.isfinite(h.view())):
        raise ValueError(f"correction '{name}' has NaN or infinite SFs; check the fit inputs")
    base = from_histogram(h, flow="clamp").model_dump()
    base.update(name=name, description=description, version=PAYLOAD_VERSION)
    for variable in base["inputs"]:
        variable["description"] = _DESCRIPTIONS.get(variable["name"], variable.get("description"))
        if variable["name"] == "systematic":
            variable["description"] = "SF variation: " + ", ".join(systematics)
    base["output"] = {"name": "weight", "type": "real", "description": "scale factor (data/MC), multiplies the MC jet weight"}
    return schemav2.Correction.model_validate(base)
