"""DeepJet: the CMS flavour tagger (1x1 convolutions, LSTMs, dense layers) in PyTorch.

The layer layout and the module names follow the PyTorch DeepJet that CMS exported to
ONNX for the Run 3 reconstruction, ``DeepJet_Run3_122X.onnx``, with nodes such as
``/InputProcess/cpf_conv1/lin/Conv`` and ``/DenseClassifier/LinLayer1``. The weights of
that file therefore map one to one onto ``DeepJet.state_dict()`` (see ``onnx_import``).

Each block is linear -> ReLU -> BatchNorm -> dropout, except the last 1x1 convolution of
every particle stack, which is linear -> ReLU only. The candidate and vertex sequences
run through the LSTMs in reversed order (the most displaced candidate comes last) and
only the last LSTM output is kept.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from advcalib.spec import CHARGED, DEEPJET_CLASSES, GLOBAL, NEUTRAL, VERTEX

#: Output channels of the 1x1 convolutions per particle group.
CPF_CHANNELS: tuple[int, ...] = (64, 32, 32, 8)
NPF_CHANNELS: tuple[int, ...] = (32, 16, 4)
VTX_CHANNELS: tuple[int, ...] = (64, 32, 32, 8)
#: Hidden sizes of the LSTMs over charged, neutral and vertex sequences.
CPF_HIDDEN, NPF_HIDDEN, VTX_HIDDEN = 150, 50, 50
#: Widths of the dense classifier (``LinLayer1`` ... ``LinLayer8``).
DENSE_WIDTHS: tuple[int, ...] = (200,) + (100,) * 7


class DeepJetConfig(BaseModel):
    """Hyperparameters of DeepJet that are not fixed by the architecture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout rate after every BatchNorm block")
    batchnorm_eps: float = Field(1e-3, gt=0.0, description="epsilon of every BatchNorm layer (1e-3 in the CMS model)")
    batchnorm_momentum: float = Field(
        0.6, gt=0.0, le=1.0, description="PyTorch momentum of every BatchNorm layer (0.6 in the CMS model)"
    )


class Block(nn.Module):
    """Layer block: linear map -> ReLU -> BatchNorm -> dropout, or linear map -> ReLU for ``norm=False``.

    ``conv=True`` uses a 1x1 ``Conv1d`` on ``[N, C, L]`` tensors, else ``Linear`` on ``[N, C]``.
    """

    def __init__(self, n_in: int, n_out: int, *, conv: bool, norm: bool, config: DeepJetConfig) -> None:
        super().__init__()
        self.lin = nn.Conv1d(n_in, n_out, kernel_size=1) if conv else nn.Linear(n_in, n_out)
        self.act = nn.ReLU()
        self.bn = _batchnorm(n_out, config) if norm else None
        self.dropout = nn.Dropout(config.dropout) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.lin(x))
        if self.bn is not None:
            x = self.dropout(self.bn(x))
        return x


def _batchnorm(n: int, config: DeepJetConfig) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=config.batchnorm_eps, momentum=config.batchnorm_momentum)


def _conv_stack(prefix: str, n_in: int, channels: tuple[int, ...], config: DeepJetConfig) -> dict[str, nn.Module]:
    layers: dict[str, nn.Module] = {f"{prefix}_bn": _batchnorm(n_in, config)}
    for i, n_out in enumerate(channels, start=1):
        last = i == len(channels)
        layers[f"{prefix}_conv{i}"] = Block(n_in, n_out, conv=True, norm=not last, config=config)
        n_in = n_out
    return layers


class InputProcess(nn.Module):
    """Input BatchNorm and 1x1 convolution stacks of the charged, neutral and vertex groups."""

    def __init__(self, config: DeepJetConfig) -> None:
        super().__init__()
        stacks = {
            "cpf": (CHARGED, CPF_CHANNELS),
            "npf": (NEUTRAL, NPF_CHANNELS),
            "vtx": (VERTEX, VTX_CHANNELS),
        }
        for prefix, (group, channels) in stacks.items():
            for name, layer in _conv_stack(prefix, len(group.features), channels, config).items():
                self.add_module(name, layer)

    def forward(
        self, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Written out layer by layer so that the module stays scriptable with TorchScript.
        cpf = self.cpf_bn(cpf.transpose(1, 2))
        cpf = self.cpf_conv4(self.cpf_conv3(self.cpf_conv2(self.cpf_conv1(cpf))))
        npf = self.npf_bn(npf.transpose(1, 2))
        npf = self.npf_conv3(self.npf_conv2(self.npf_conv1(npf)))
        sv = self.vtx_bn(sv.transpose(1, 2))
        sv = self.vtx_conv4(self.vtx_conv3(self.vtx_conv2(self.vtx_conv1(sv))))
        return cpf.transpose(1, 2), npf.transpose(1, 2), sv.transpose(1, 2)


class DenseClassifier(nn.Sequential):
    """The dense layers ``LinLayer1`` ... ``LinLayer8`` (all with BatchNorm and dropout)."""

    def __init__(self, n_in: int, config: DeepJetConfig) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, n_out in enumerate(DENSE_WIDTHS, start=1):
            layers[f"LinLayer{i}"] = Block(n_in, n_out, conv=False, norm=True, config=config)
            n_in = n_out
        super().__init__(layers)


class DeepJet(nn.Module):
    """DeepJet flavour tagger: ``forward(glob, cpf, npf, sv)`` returns logits ``[N, 6]``.

    Inputs have the per-jet shapes of ``advcalib.spec`` (global, charged, neutral, vertex)
    with a leading batch axis. Output classes are ``advcalib.spec.DEEPJET_CLASSES``
    (b, bb, lepb, c, uds, g); apply a softmax for probabilities. A batch of one jet works in
    eval mode; training mode needs at least two jets per batch because of BatchNorm.
    """

    architecture = "DeepJet"
    classes = DEEPJET_CLASSES

    def __init__(self, *, dropout: float = 0.1, batchnorm_eps: float = 1e-3, batchnorm_momentum: float = 0.6) -> None:
        super().__init__()
        config = DeepJetConfig(dropout=dropout, batchnorm_eps=batchnorm_eps, batchnorm_momentum=batchnorm_momentum)
        self.config = config.model_dump()
        self.global_bn = _batchnorm(len(GLOBAL.features), config)
        self.InputProcess = InputProcess(config)
        self.cpf_lstm = nn.LSTM(CPF_CHANNELS[-1], CPF_HIDDEN, batch_first=True)
        self.npf_lstm = nn.LSTM(NPF_CHANNELS[-1], NPF_HIDDEN, batch_first=True)
        self.vtx_lstm = nn.LSTM(VTX_CHANNELS[-1], VTX_HIDDEN, batch_first=True)
        self.cpf_bn = _batchnorm(CPF_HIDDEN, config)
        self.npf_bn = _batchnorm(NPF_HIDDEN, config)
        self.vtx_bn = _batchnorm(VTX_HIDDEN, config)
        n_dense_in = len(GLOBAL.features) + CPF_HIDDEN + NPF_HIDDEN + VTX_HIDDEN
        self.DenseClassifier = DenseClassifier(n_dense_in, config)
        self.Linear = nn.Linear(DENSE_WIDTHS[-1], len(DEEPJET_CLASSES))

    def forward(self, glob: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        glob = self.global_bn(glob)
        cpf, npf, sv = self.InputProcess(cpf, npf, sv)
        # Each LSTM reads its sequence back to front and only its last output is kept.
        cpf = self.cpf_bn(self.cpf_lstm(torch.flip(cpf, dims=(1,)))[0][:, -1])
        npf = self.npf_bn(self.npf_lstm(torch.flip(npf, dims=(1,)))[0][:, -1])
        sv = self.vtx_bn(self.vtx_lstm(torch.flip(sv, dims=(1,)))[0][:, -1])
        x = torch.cat((glob, cpf, npf, sv), dim=1)
        return self.Linear(self.DenseClassifier(x))
