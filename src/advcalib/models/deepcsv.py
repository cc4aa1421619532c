"""DeepCSV: the dense CMS flavour tagger on 66 jet, track and vertex inputs.

The layout follows the CMS DeepCSV. A BatchNorm layer normalises the inputs, and its
running mean and variance replace the fixed input scaling of the CMS training. Five
dense layers of 100 units with ReLU and dropout 0.1 follow, then 4 logits for the classes
of ``advcalib.spec.DEEPCSV_CLASSES`` (b, bb, c, udsg).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from advcalib.spec import DEEPCSV, DEEPCSV_CLASSES


class DeepCSVConfig(BaseModel):
    """Hyperparameters of DeepCSV."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout rate after every hidden layer")
    width: int = Field(100, gt=0, description="units of each hidden layer")
    depth: int = Field(5, gt=0, description="number of hidden layers")


class DeepCSV(nn.Module):
    """DeepCSV flavour tagger: ``forward(x)`` maps ``[N, 66]`` inputs to logits ``[N, 4]``."""

    architecture = "DeepCSV"
    classes = DEEPCSV_CLASSES

    def __init__(self, *, dropout: float = 0.1, width: int = 100, depth: int = 5) -> None:
        super().__init__()
        config = DeepCSVConfig(dropout=dropout, width=width, depth=depth)
        self.config = config.model_dump()
        n_in = len(DEEPCSV.features)
        self.input_bn = nn.BatchNorm1d(n_in)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(1, config.depth + 1):
            layers[f"dense{i}"] = nn.Linear(n_in, config.width)
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"dropout{i}"] = nn.Dropout(config.dropout)
            n_in = config.width
        self.hidden = nn.Sequential(layers)
        self.output = nn.Linear(n_in, len(DEEPCSV_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(self.input_bn(x)))
