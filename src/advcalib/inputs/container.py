"""The DeepJet input arrays of a set of jets, with the (event, jet) index of each row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advcalib import spec

#: Values of ``DeepJetInputs.source``.
SOURCES: tuple[str, ...] = ("deepjet_branches", "pfcands")


@dataclass
class DeepJetInputs:
    """DeepJet inputs in the layout of the CMS ONNX networks (``input_1`` ... ``input_5``).

    Row ``i`` belongs to jet ``jet_index[i]`` of event ``event_index[i]`` of the events array
    the inputs were built from. ``n_sanitized`` counts the NaN and infinite values that were
    replaced by their feature's default.
    """

    glob: np.ndarray
    cpf: np.ndarray
    npf: np.ndarray
    sv: np.ndarray
    jet_pt: np.ndarray
    event_index: np.ndarray
    jet_index: np.ndarray
    source: str
    n_sanitized: int = 0

    def __post_init__(self) -> None:
        n = len(self.event_index)
        expected = {
            "glob": (n, *spec.GLOBAL.shape),
            "cpf": (n, *spec.CHARGED.shape),
            "npf": (n, *spec.NEUTRAL.shape),
            "sv": (n, *spec.VERTEX.shape),
            "jet_pt": (n, 1),
            "jet_index": (n,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"DeepJetInputs.{name} has shape {getattr(self, name).shape}, expected {shape}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown DeepJetInputs source {self.source!r}; use one of {', '.join(SOURCES)}")

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the four network inputs ``(glob, cpf, npf, sv)``."""
        return self.glob, self.cpf, self.npf, self.sv

    def onnx_feed(self) -> dict[str, np.ndarray]:
        """Inputs keyed by the CMS ONNX input names (``input_1`` ... ``input_5``)."""
        names = [group.onnx_name for group in spec.DEEPJET_GROUPS] + [spec.JET_PT.onnx_name]
        return dict(zip(names, (*self.arrays(), self.jet_pt)))

    def __len__(self) -> int:
        return int(len(self.event_index))

    def take(self, index: np.ndarray | slice) -> DeepJetInputs:
        """Select the rows given by ``index`` (integer array, boolean mask or slice)."""
        return DeepJetInputs(
            glob=self.glob[index],
            cpf=self.cpf[index],
            npf=self.npf[index],
            sv=self.sv[index],
            jet_pt=self.jet_pt[index],
            event_index=self.event_index[index],
            jet_index=self.jet_index[index],
            source=self.source,
            n_sanitized=self.n_sanitized,
        )

    @classmethod
    def empty(cls, source: str = "pfcands") -> DeepJetInputs:
        """Inputs of zero jets, with the right shapes and dtypes."""

        def zeros(*shape: int) -> np.ndarray:
            return np.zeros((0, *shape), dtype=np.float32)

        return cls(
            glob=zeros(*spec.GLOBAL.shape),
            cpf=zeros(*spec.CHARGED.shape),
            npf=zeros(*spec.NEUTRAL.shape),
            sv=zeros(*spec.VERTEX.shape),
            jet_pt=zeros(1),
            event_index=np.zeros(0, dtype=np.int64),
            jet_index=np.zeros(0, dtype=np.int64),
            source=source,
        )

    @classmethod
    def concatenate(cls, parts: list[DeepJetInputs]) -> DeepJetInputs:
        """Stack the rows of several parts; ``n_sanitized`` adds up.

        Event indices are kept as they are: they refer to each part's own events array.
        Parts built from different sources are rejected, because their rows would not be
        comparable.
        """
        if not parts:
            return cls.empty()
        sources = {part.source for part in parts}
        if len(sources) > 1:
            raise ValueError(f"cannot concatenate DeepJetInputs from different sources: {sorted(sources)}")
        return cls(
            glob=np.concatenate([p.glob for p in parts]),
            cpf=np.concatenate([p.cpf for p in parts]),
            npf=np.concatenate([p.npf for p in parts]),
            sv=np.concatenate([p.sv for p in parts]),
            jet_pt=np.concatenate([p.jet_pt for p in parts]),
            event_index=np.concatenate([p.event_index for p in parts]),
            jet_index=np.concatenate([p.jet_index for p in parts]),
            source=parts[0].source,
            n_sanitized=sum(p.n_sanitized for p in parts),
        )
