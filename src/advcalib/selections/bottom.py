"""Bottom-enriched region: ttbar.

Channels ``m`` and ``e`` are the semileptonic soft-muon selection of ``charm.py`` with at
least four jets and no mT cut. Channel ``emu`` is dilepton ttbar: one muon and one
electron of opposite charge and at least two clean jets; its probe is the leading jet and
it has no charge-sign category, so every event gets osss = +1.
"""

from __future__ import annotations

from typing import Any

import awkward as ak

from advcalib.selections import objects
from advcalib.selections.charm import select_soft_muon_region
from advcalib.selections.cuts import CutTable, SelectionSteps

CHANNELS: tuple[str, ...] = ("m", "e", "emu")


def select_bottom(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select ttbar events in one of :data:`CHANNELS`."""
    if channel == "emu":
        return select_dilepton(events, cuts)
    if channel in ("m", "e"):
        return select_soft_muon_region(events, cuts, channel)
    raise ValueError(f"bottom selection has channels {', '.join(CHANNELS)}, not {channel!r}")


def select_dilepton(events: Any, cuts: CutTable) -> SelectionSteps:
    """Select emu ttbar: exactly one muon and one electron, opposite charge, two jets."""
    muons = objects.collection(events, "Muon")
    electrons = objects.collection(events, "Electron")
    muon_ok = objects.shared_isolated_muons(events, cuts, pt=cuts["muon_pt"])
    electron_ok = objects.shared_isolated_electrons(events, cuts, pt=cuts["electron_pt"])
    muon = ak.firsts(muons[muon_ok])
    electron = ak.firsts(electrons[electron_ok])

    jets = objects.collection(events, "Jet")
    dr = cuts["jet_lepton_dr"]
    jet_ok = (
        objects.shared_good_jets(events, cuts)
        & objects.far_from(jets, ak.singletons(muon), dr)
        & objects.far_from(jets, ak.singletons(electron), dr)
    )
    probe = objects.leading(ak.local_index(jets, axis=1)[jet_ok], jets.pt[jet_ok])

    steps = {
        "trigger": objects.trigger_mask(events, cuts["triggers"], context="bottom/emu"),
        "one_muon": ak.sum(muon_ok, axis=1) == 1,
        "one_electron": ak.sum(electron_ok, axis=1) == 1,
        "opposite_charge": muon.charge * electron.charge < 0,
        "jet_multiplicity": ak.sum(jet_ok, axis=1) >= cuts["n_jets_min"],
    }
    return SelectionSteps(steps=steps, probe=probe, osss=1)
