"""DeepJet in eval mode as plain matrix products: every BatchNorm folded into the next linear layer.

In eval mode a BatchNorm is the affine map ``x * s + t`` per channel with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``. A linear layer that follows
it absorbs it: ``W (x * s + t) + b = (W * s) x + (W t + b)``. DeepJet's blocks are
linear -> ReLU -> BatchNorm, so each BatchNorm folds into the next block's weights, the
input BatchNorms fold into the first layers, and the BatchNorms after the LSTMs (and
the global one) fold into the first dense layer. A 1x1 convolution is a linear layer
applied to every slot, so the particle stacks become products of ``[N * slots, C]``
matrices in the layout the inputs already have, without the transposes of ``Conv1d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: A folded linear layer: transposed weight ``[in, out]`` and bias ``[out]``.
Layer = tuple[torch.Tensor, torch.Tensor]


def batchnorm_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(s, t)`` with ``bn(x) == x * s + t`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold(linear: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> Layer:
    weight = linear.weight.reshape(linear.weight.shape[0], -1)
    return (weight * scale[None, :]).t().contiguous(), linear.bias + weight @ shift


def fold_blocks(
    first: tuple[torch.Tensor, torch.Tensor], blocks: list[nn.Module]
) -> tuple[list[Layer], tuple[torch.Tensor, torch.Tensor] | None]:
    """Fold the affine map ``first`` and each block's BatchNorm into the following linear layer.

    Returns the folded layers and the BatchNorm affine left after the last block (None
    when the last block has no BatchNorm).
    """
    layers = []
    affine: tuple[torch.Tensor, torch.Tensor] | None = first
    for block in blocks:
        if affine is None:
            weight = block.lin.weight.reshape(block.lin.weight.shape[0], -1)
            layers.append((weight.t().contiguous(), block.lin.bias))
        else:
            layers.append(_fold(block.lin, *affine))
        affine = None if block.bn is None else batchnorm_affine(block.bn)
    return layers, affine


@dataclass
class FoldedDeepJet:
    """Folded layers of one DeepJet: the three particle stacks and the dense classifier."""

    stacks: dict[str, list[Layer]]
    dense: list[Layer]
    output: Layer

    @classmethod
    def build(cls, model: nn.Module) -> FoldedDeepJet:
        """Fold an eval-mode ``advcalib.models.DeepJet``; raise ValueError in training mode."""
        if model.training:
            raise ValueError("BatchNorm folding needs the model in eval mode; call model.eval() first")
        process = model.InputProcess
        stacks = {}
        with torch.no_grad():
            for group in ("cpf", "npf", "vtx"):
                blocks = []
                while hasattr(process, f"{group}_conv{len(blocks) + 1}"):
                    blocks.append(getattr(process, f"{group}_conv{len(blocks) + 1}"))
                stacks[group], _ = fold_blocks(batchnorm_affine(getattr(process, f"{group}_bn")), blocks)
            affines = [batchnorm_affine(bn) for bn in (model.global_bn, model.cpf_bn, model.npf_bn, model.vtx_bn)]
            first = (torch.cat([a[0] for a in affines]), torch.cat([a[1] for a in affines]))
            dense, last = fold_blocks(first, list(model.DenseClassifier.children()))
            output = _fold(model.Linear, *last) if last is not None else (model.Linear.weight.t().contiguous(), model.Linear.bias)
        return cls(stacks=stacks, dense=dense, output=output)


def run_layers(x: torch.Tensor, layers: list[Layer]) -> torch.Tensor:
    """Apply folded linear layers, each followed by a ReLU, to ``x`` ``[rows, in]``."""
    for weight, bias in layers:
        x = torch.relu(torch.addmm(bias, x, weight))
    return x
