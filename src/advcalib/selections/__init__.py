"""Event selections of the calibration regions: light (DY+jets), charm (W+c), bottom (ttbar).

    from advcalib.selections import make_selection, default_selections
    result = make_selection("charm", "m").apply(events)   # mask, probe, osss, cutflow

The cut tables in :mod:`advcalib.selections.cuts` hold every threshold.
"""

from __future__ import annotations

from typing import Any

from advcalib.selections.bottom import CHANNELS as BOTTOM_CHANNELS
from advcalib.selections.bottom import select_bottom
from advcalib.selections.charm import CHANNELS as CHARM_CHANNELS
from advcalib.selections.charm import select_charm
from advcalib.selections.cuts import CUT_TABLES, Cut, CutTable, Selection, SelectionResult, cut_table
from advcalib.selections.light import CHANNELS as LIGHT_CHANNELS
from advcalib.selections.light import select_light
from advcalib.selections.objects import MissingInputError

#: Selection function and channels of each calibration region.
REGIONS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "light": (select_light, LIGHT_CHANNELS),
    "charm": (select_charm, CHARM_CHANNELS),
    "bottom": (select_bottom, BOTTOM_CHANNELS),
}


def make_selection(name: str, channel: str, **overrides: Any) -> Selection:
    """Selection ``name`` in ``channel`` with its cut table (values may be overridden)."""
    if name not in REGIONS:
        raise KeyError(f"unknown selection {name!r}; use one of {', '.join(REGIONS)}")
    function, channels = REGIONS[name]
    if channel not in channels:
        raise KeyError(f"selection {name!r} has channels {', '.join(channels)}, not {channel!r}")
    return Selection(name=name, channel=channel, cuts=cut_table(name, channel, overrides), function=function)


def default_selections() -> tuple[Selection, ...]:
    """Build every region in every channel with the default cut tables."""
    return tuple(make_selection(name, channel) for name, (_, channels) in REGIONS.items() for channel in channels)


__all__ = [
    "CUT_TABLES",
    "Cut",
    "CutTable",
    "MissingInputError",
    "REGIONS",
    "Selection",
    "SelectionResult",
    "cut_table",
    "default_selections",
    "make_selection",
]
