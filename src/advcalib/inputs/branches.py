"""DeepJet inputs stored as flat per-jet branches (``Jet_DeepJet_*``), reading and writing.

Naming follows PFNano's ``DeepJetTableProducer``: the branch of slot ``i`` of a candidate or
vertex feature is ``Jet_DeepJet_<spec feature name>_<i>``, for example
``Jet_DeepJet_Cpfcan_BtagPf_trackSip2dSig_0``, ``Jet_DeepJet_Npfcan_HadFrac_3`` or
``Jet_DeepJet_sv_d3dsig_1``. The counts are ``Jet_DeepJet_nCpfcand``, ``_nNpfcand``, ``_nsv``
and ``_npv``. Jet pt and eta come from ``Jet_pt * (1 - Jet_rawFactor)`` and ``Jet_eta``, the
``TagVarCSV_*`` globals from ``Jet_DeepCSV_*``.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from advcalib import spec
from advcalib.inputs.container import DeepJetInputs
from advcalib.inputs.jets import JetSelection, flat_field

PREFIX = "DeepJet_"
#: Global features stored as their own ``Jet_DeepJet_<name>`` branch.
COUNT_FEATURES: tuple[str, ...] = ("nCpfcand", "nNpfcand", "nsv", "npv")


def slot_fields(group: spec.InputGroup) -> list[list[str]]:
    """``Jet`` field names of a slotted group, ``[slot][feature]``, without the ``Jet_`` prefix."""
    return [[f"{PREFIX}{name}_{slot}" for name in group.names] for slot in range(group.slots)]


def deepjet_fields() -> list[str]:
    """List every ``Jet`` field that source ``deepjet_branches`` reads besides jet kinematics."""
    fields = [PREFIX + name for name in COUNT_FEATURES]
    for group in (spec.CHARGED, spec.NEUTRAL, spec.VERTEX):
        fields += [name for slot in slot_fields(group) for name in slot]
    return fields


def read_slots(events: ak.Array, selection: JetSelection, group: spec.InputGroup) -> np.ndarray:
    """Read one slotted group [N, slots, features] from the ``Jet_DeepJet_*`` branches."""
    out = np.zeros((len(selection), *group.shape), dtype=np.float64)
    for slot, names in enumerate(slot_fields(group)):
        for position, name in enumerate(names):
            out[:, slot, position] = flat_field(events.Jet, name)[selection.global_index]
    return out


def read_counts(events: ak.Array, selection: JetSelection) -> dict[str, np.ndarray]:
    """Read the count features ``nCpfcand``, ``nNpfcand``, ``nsv`` and ``npv`` per selected jet."""
    return {name: flat_field(events.Jet, PREFIX + name)[selection.global_index] for name in COUNT_FEATURES}


def deepjet_branches(inputs: DeepJetInputs, counts: np.ndarray | ak.Array) -> dict[str, ak.Array]:
    """Jagged ``Jet_DeepJet_*`` branches that store ``inputs`` in PFNano's layout.

    ``inputs`` must contain every jet of the events, event by event in ``events.Jet`` order,
    and ``counts`` the number of jets per event. Written as a ``Jet`` collection of a TTree,
    the result gives a file from which source ``deepjet_branches`` reads the same arrays
    back. Integer-valued features are written as int32, the rest as float32.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(inputs):
        raise ValueError(f"counts add up to {counts.sum()} jets but inputs contain {len(inputs)} rows; pass the number of jets per event")
    columns: dict[str, np.ndarray] = {}
    for name in COUNT_FEATURES:
        columns[PREFIX + name] = inputs.glob[:, spec.GLOBAL.index(name)].astype(np.int32)
    for group, array in ((spec.CHARGED, inputs.cpf), (spec.NEUTRAL, inputs.npf), (spec.VERTEX, inputs.sv)):
        for slot, names in enumerate(slot_fields(group)):
            for position, (name, feature) in enumerate(zip(names, group.features)):
                dtype = np.int32 if feature.integer else np.float32
                columns[name] = array[:, slot, position].astype(dtype)
    return {f"Jet_{name}": ak.unflatten(values, counts) for name, values in columns.items()}
