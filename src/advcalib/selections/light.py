"""Light-enriched region: Z(ll)+jets, probe = leading clean jet.

Channels ``mm`` and ``ee``. The leptons are paired in pt order and the first
opposite-charge pair that passes the leading-lepton pt, m_ll window and pT_ll cuts is
the Z candidate. The region has no soft muon, so it has no charge-sign category either:
every selected event gets osss = +1 and the OS-SS subtraction leaves it unchanged.
"""

from __future__ import annotations

from typing import Any

import awkward as ak

from advcalib.selections import objects
from advcalib.selections.cuts import CutTable, SelectionSteps

CHANNELS: tuple[str, ...] = ("mm", "ee")


def select_light(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select DY+jets events; the steps are trigger, lepton pair cuts and a clean jet."""
    if channel == "mm":
        leptons = objects.collection(events, "Muon")
        is_good = objects.shared_isolated_muons(events, cuts, pt=cuts["muon_pt"])
    elif channel == "ee":
        leptons = objects.collection(events, "Electron")
        is_good = objects.shared_isolated_electrons(events, cuts, pt=cuts["electron_pt"])
    else:
        raise ValueError(f"light selection has channels {', '.join(CHANNELS)}, not {channel!r}")
    good = leptons[is_good]
    good = good[ak.argsort(good.pt, axis=1, ascending=False)]
    pairs = ak.combinations(good, 2, fields=["lead", "sub"])
    dilepton = pairs.lead + pairs.sub
    low, high = cuts["mll_window"]

    leading_ok = pairs.lead.pt > cuts["leading_lepton_pt"]
    charge_ok = leading_ok & (pairs.lead.charge * pairs.sub.charge < 0)
    mass_ok = charge_ok & (dilepton.mass > low) & (dilepton.mass < high)
    pair_ok = mass_ok & (dilepton.pt > cuts["ptll_min"])
    chosen = ak.firsts(pairs[pair_ok])
    selected_leptons = ak.concatenate([ak.singletons(chosen.lead), ak.singletons(chosen.sub)], axis=1)

    jets = objects.collection(events, "Jet")
    jet_ok = objects.shared_good_jets(events, cuts) & objects.far_from(jets, selected_leptons, cuts["jet_lepton_dr"])
    probe = objects.leading(ak.local_index(jets, axis=1)[jet_ok], jets.pt[jet_ok])

    steps = {
        "trigger": objects.trigger_mask(events, cuts["triggers"], context=f"light/{channel}"),
        "two_leptons": ak.any(leading_ok, axis=1),
        "opposite_charge": ak.any(charge_ok, axis=1),
        "mll_window": ak.any(mass_ok, axis=1),
        "ptll": ak.any(pair_ok, axis=1),
        "jet": ak.any(jet_ok, axis=1),
    }
    return SelectionSteps(steps=steps, probe=probe, osss=1)
