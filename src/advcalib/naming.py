"""NanoAOD branch names across versions: aliases from newer names to the names advcalib reads.

advcalib reads the Run 2 PFNano names (``PFCands_*``, ``JetPFCands_*``, ``JetSVs_*``,
``fixedGridRhoFastjetAll``). Some Run 3 productions store the same quantities under other
names, for example ``PFCand_*`` or ``Rho_fixedGridRhoFastjetAll`` (NanoAOD v12 and later).
:data:`COLLECTION_ALIASES` and :data:`BRANCH_ALIASES` list the renames in one place;
:func:`alias_map` applies them to the branch list of a file and
:class:`AliasedPFNanoAODSchema` applies them when coffea builds the events, so the
selections, the input builder and the processor see one naming whatever the file uses.

A file that contains both spellings of a branch keeps the canonical one and the alias is
ignored, so an alias never hides a branch that is present.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from coffea.nanoevents import PFNanoAODSchema

logger = logging.getLogger(__name__)

#: Collection prefix in some NanoAOD versions -> prefix advcalib reads. The counter
#: ``n<prefix>`` is renamed with its collection.
COLLECTION_ALIASES: dict[str, str] = {
    "PFCand": "PFCands",
    "JetPFCand": "JetPFCands",
    "JetSV": "JetSVs",
}

#: Single branches renamed between versions -> name advcalib reads. Applied after the
#: collection renames, so keys use the canonical collection prefix.
BRANCH_ALIASES: dict[str, str] = {
    "Rho_fixedGridRhoFastjetAll": "fixedGridRhoFastjetAll",
    "Rho_fixedGridRhoFastjetCentral": "fixedGridRhoFastjetCentral",
    "Rho_fixedGridRhoFastjetCentralCalo": "fixedGridRhoFastjetCentralCalo",
    "Rho_fixedGridRhoFastjetCentralChargedPileUp": "fixedGridRhoFastjetCentralChargedPileUp",
    "Rho_fixedGridRhoFastjetCentralNeutral": "fixedGridRhoFastjetCentralNeutral",
    "JetPFCands_pFCandIdx": "JetPFCands_pFCandsIdx",
}


def canonical_name(branch: str) -> str:
    """Return the name advcalib reads for ``branch``; names without an alias come back unchanged.

    ``PFCand_pt`` gives ``PFCands_pt``, ``nPFCand`` gives ``nPFCands`` and
    ``Rho_fixedGridRhoFastjetAll`` gives ``fixedGridRhoFastjetAll``.
    """
    counter = branch.startswith("n") and branch[1:] in COLLECTION_ALIASES
    if counter:
        return "n" + COLLECTION_ALIASES[branch[1:]]
    prefix, separator, rest = branch.partition("_")
    if separator and prefix in COLLECTION_ALIASES:
        branch = f"{COLLECTION_ALIASES[prefix]}_{rest}"
    return BRANCH_ALIASES.get(branch, branch)


def alias_map(branches: Iterable[str]) -> dict[str, str]:
    """Map each branch of a file that needs renaming to its canonical name.

    A branch whose canonical name is also present in the file is left out, because the
    file already stores the canonical branch.
    """
    names = list(branches)
    present = set(names)
    renames: dict[str, str] = {}
    for name in names:
        canonical = canonical_name(name)
        if canonical == name:
            continue
        if canonical in present or canonical in renames.values():
            logger.debug("branch %s is not renamed to %s because the file already has that branch", name, canonical)
            continue
        renames[name] = canonical
    return renames


def canonical_branches(branches: Iterable[str]) -> set[str]:
    """Return the branch names as advcalib reads them after :func:`alias_map`."""
    names = list(branches)
    renames = alias_map(names)
    return {renames.get(name, name) for name in names}


class AliasedPFNanoAODSchema(PFNanoAODSchema):
    """coffea's ``PFNanoAODSchema`` with the renames of :func:`alias_map` applied first.

    Only the field names change; each field still reads its branch under the name stored
    in the file, so no data is copied. Files that use the canonical names build exactly
    the events ``PFNanoAODSchema`` builds.
    """

    def __init__(self, base_form: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        renames = alias_map(base_form["fields"])
        if renames:
            logger.debug("renamed NanoAOD branches: %s", ", ".join(f"{old} -> {new}" for old, new in renames.items()))
            base_form = dict(base_form)
            base_form["fields"] = [renames.get(name, name) for name in base_form["fields"]]
        super().__init__(base_form, *args, **kwargs)
