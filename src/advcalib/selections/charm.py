"""Charm-enriched region: W+c with a soft muon inside the charm jet.

The same soft-muon-in-jet selection with at least four jets and no mT cut makes the
semileptonic ttbar region of ``bottom.py``, so both call :func:`select_soft_muon_region`.
The charge sign osss = -q(lepton) q(soft muon) is +1 for opposite sign: in W+c the W
and the charm quark's muon have opposite charges, while the background is symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import awkward as ak

from advcalib.selections import objects
from advcalib.selections.cuts import CutTable, SelectionSteps

CHANNELS: tuple[str, ...] = ("m", "e")


def select_charm(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select W+c events (1 to 3 jets, mT cut in the table)."""
    return select_soft_muon_region(events, cuts, channel)


#: Cuts of the soft-muon regions that only the last steps read; the rest is shared.
_REGION_CUTS = ("n_jets_min", "n_jets_max", "mt_min")


@dataclass(frozen=True)
class SoftMuonInJet:
    """Lepton, jets and soft-muon matching of one channel, before the multiplicity and mT cuts."""

    tagged: ak.Array
    veto_ok: ak.Array
    lepton: ak.Array
    jet_ok: ak.Array
    in_jet: ak.Array
    soft_muon: ak.Array
    probe: ak.Array


def _leptons(events: Any, cuts: CutTable, channel: str) -> tuple[ak.Array, ak.Array, ak.Array]:
    """Return the channel's leptons, the mask of tagged ones and the lepton-veto mask."""
    muons = objects.collection(events, "Muon")
    electrons = objects.collection(events, "Electron")
    n_veto_muons = ak.sum(objects.shared_isolated_muons(events, cuts, pt=cuts["veto_muon_pt"]), axis=1)
    n_veto_electrons = ak.sum(objects.shared_isolated_electrons(events, cuts, pt=cuts["veto_electron_pt"]), axis=1)
    if channel == "m":
        tagged = objects.shared_isolated_muons(events, cuts, pt=cuts["muon_pt"])
        veto_ok = (n_veto_muons == 1) & (n_veto_electrons == 0)
        return muons, tagged, veto_ok
    if channel == "e":
        tagged = objects.shared_isolated_electrons(events, cuts, pt=cuts["electron_pt"])
        veto_ok = (n_veto_electrons == 1) & (n_veto_muons == 0)
        return electrons, tagged, veto_ok
    raise ValueError(f"soft-muon regions have channels {', '.join(CHANNELS)}, not {channel!r}")


def soft_muon_in_jet(events: Any, cuts: CutTable, channel: str) -> SoftMuonInJet:
    """Find the tagged lepton, the clean jets and the leading jet with a soft muon.

    Where several jets hold a soft muon, the leading such jet and its leading soft muon
    are used. The charm and bottom regions of a channel share this result inside
    ``objects.shared_objects``, because it reads none of the cuts in ``_REGION_CUTS``.
    """
    leptons, tagged, veto_ok = _leptons(events, cuts, channel)
    lepton = ak.firsts(leptons[tagged])

    jets = objects.collection(events, "Jet")
    jet_ok = objects.shared_good_jets(events, cuts) & objects.far_from(jets, ak.singletons(lepton), cuts["jet_lepton_dr"])
    selected_jets = jets[jet_ok]
    selected_index = ak.local_index(jets, axis=1)[jet_ok]
    muons = objects.collection(events, "Muon")
    candidates = muons[objects.soft_muons(muons, cuts)]
    pairs = ak.argcartesian([selected_jets, candidates], axis=1)
    pair_jet = selected_jets[pairs["0"]]
    pair_muon = candidates[pairs["1"]]
    in_jet = (
        (pair_jet.delta_r(pair_muon) < cuts["soft_muon_jet_dr"])
        & (pair_muon.pt / pair_jet.pt < cuts["soft_muon_pt_ratio_max"])
        & (pair_jet.muEF + pair_jet.neEmEF < cuts["jet_mu_ne_em_fraction_max"])
    )
    chosen = ak.firsts(pairs[in_jet])
    soft_muon = ak.firsts(candidates[ak.singletons(chosen["1"])])
    probe = ak.firsts(selected_index[ak.singletons(chosen["0"])])
    return SoftMuonInJet(
        tagged=tagged, veto_ok=veto_ok, lepton=lepton, jet_ok=jet_ok, in_jet=in_jet, soft_muon=soft_muon, probe=probe
    )


def select_soft_muon_region(events: Any, cuts: CutTable, channel: str) -> SelectionSteps:
    """Select one isolated lepton, jets and a soft muon in a jet; probe = that jet.

    Steps: trigger, exactly one tagged lepton, no second isolated lepton, the jet
    multiplicity, a soft muon in a selected jet, then mT (if the table has ``mt_min``)
    and, in the muon channel, the m(lepton, soft muon) cuts. Where several jets hold a
    soft muon, the leading such jet and its leading soft muon are used.
    """
    shared_cuts = tuple((name, value) for name, value in cuts.values().items() if name not in _REGION_CUTS)
    found = objects.shared(
        events, ("soft_muon_in_jet", channel, shared_cuts), lambda: soft_muon_in_jet(events, cuts, channel)
    )
    lepton, soft_muon = found.lepton, found.soft_muon
    n_jets = ak.sum(found.jet_ok, axis=1)
    multiplicity_ok = n_jets >= cuts["n_jets_min"]
    if cuts["n_jets_max"] is not None:
        multiplicity_ok = multiplicity_ok & (n_jets <= cuts["n_jets_max"])

    steps = {
        "trigger": objects.trigger_mask(events, cuts["triggers"], context=f"soft-muon/{channel}"),
        "one_lepton": ak.sum(found.tagged, axis=1) == 1,
        "lepton_veto": found.veto_ok,
        "jet_multiplicity": multiplicity_ok,
        "soft_muon_in_jet": ak.any(found.in_jet, axis=1),
    }
    if "mt_min" in cuts.names():
        met = objects.collection(events, "MET")
        steps["mt"] = objects.transverse_mass(lepton, met) > cuts["mt_min"]
    if channel == "m":
        mass = (lepton + soft_muon).mass
        low, high = cuts["lepton_soft_muon_mass_veto"]
        steps["lepton_soft_muon_mass"] = (mass > cuts["lepton_soft_muon_mass_min"]) & ((mass < low) | (mass > high))
    osss = -lepton.charge * soft_muon.charge
    return SelectionSteps(steps=steps, probe=found.probe, osss=osss)
