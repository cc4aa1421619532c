"""Matrix-multiply FLOP/s of the machine and the FLOPs DeepJet needs per jet.

FLOPs are counted as two per multiply-add (the convention of the matmul rate they are
compared with). Counted: the 1x1 convolutions on every slot, the four LSTM gates of
every time step (input and recurrent products), and the dense layers. Not counted:
biases, BatchNorm, activations and the gate nonlinearities, which are elementwise and,
by a rough count, about 1 % of the products for DeepJet.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from advcalib.bench.timing import best_time, torch_threads
from advcalib.spec import CHARGED, NEUTRAL, VERTEX

#: Slots of the sequences each convolution stack and LSTM of DeepJet runs over.
_SLOTS = {"cpf": CHARGED.slots, "npf": NEUTRAL.slots, "vtx": VERTEX.slots}


def matmul_flops(*, size: int, n_threads: int, repeats: int, device: torch.device) -> float:
    """Measure float32 ``torch.matmul`` FLOP/s of two ``size x size`` matrices on ``device``.

    Method: best of ``repeats`` timed products after one warm-up; ``2 * size**3`` FLOPs each.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    with torch_threads(n_threads), torch.inference_mode():
        seconds = best_time(lambda: torch.matmul(a, b), repeats=repeats, device=device)
    return 2.0 * size**3 / seconds


def _lstm_step_flops(lstm: nn.LSTM) -> int:
    return 2 * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)


def deepjet_flops(model: nn.Module) -> dict[str, int]:
    """Count DeepJet's FLOPs per jet by layer type, for sequences padded to every slot.

    Reads the layer sizes from ``model`` (an ``advcalib.models.DeepJet``); a network with
    other layer names raises ``ValueError``.
    """
    counts = {"conv": 0, "lstm": 0, "dense": 0}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv1d):
            prefix = name.split(".")[-2].split("_")[0]
            if prefix not in _SLOTS:
                raise ValueError(f"convolution {name} belongs to no known particle group ({', '.join(_SLOTS)})")
            counts["conv"] += 2 * module.in_channels * module.out_channels * _SLOTS[prefix]
        elif isinstance(module, nn.LSTM):
            prefix = name.split("_")[0]
            counts["lstm"] += _lstm_step_flops(module) * _SLOTS[prefix]
        elif isinstance(module, nn.Linear):
            counts["dense"] += 2 * module.in_features * module.out_features
    if counts["lstm"] == 0:
        raise ValueError("model has no LSTM; expected an advcalib.models.DeepJet")
    counts["total"] = counts["conv"] + counts["lstm"] + counts["dense"]
    return counts


def bucketed_lstm_flops(model: nn.Module, lengths: dict[str, np.ndarray]) -> float:
    """Mean LSTM FLOPs per jet when each LSTM runs only over the filled slots of a jet.

    ``lengths`` maps ``cpf``, ``npf``, ``vtx`` to the number of steps each jet needs (see
    ``advcalib.models.fast.sequence_lengths``).
    """
    total = 0.0
    for prefix in _SLOTS:
        lstm = getattr(model, f"{prefix}_lstm")
        total += _lstm_step_flops(lstm) * float(np.mean(lengths[prefix]))
    return total
