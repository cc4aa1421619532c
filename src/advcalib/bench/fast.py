"""Inference of DeepJet that skips the LSTM steps over padded slots, with the same outputs.

DeepJet reads each particle sequence back to front, so a jet with ``n`` filled slots
first feeds ``L - n`` padded (all-zero) slots into its LSTM. In eval mode every padded
slot becomes the same vector after the input BatchNorm and the 1x1 convolutions, so
the LSTM state after ``k`` padded steps depends on ``k`` only. ``BucketedDeepJet``
computes those ``L + 1`` states once per call on a batch of one, sorts the jets by
filled length, and runs each group of similar jets over its longest filled length only,
starting from the matching padding state. The outputs equal ``DeepJet.forward`` up to
float32 rounding (the dense LSTM kernel is the same one).

A slot counts as padding when it and every later slot of the jet are all zero; a real
candidate whose inputs are all zero behind the last non-zero one gives the same output
either way, because the computation depends on the input values only.
"""

from __future__ import annotations

import torch
from torch import nn

_GROUPS = ("cpf", "npf", "vtx")
#: Jets per LSTM call: large enough for efficient matrix products, small enough for short groups.
GROUP_SIZE = 512


def sequence_lengths(x: torch.Tensor) -> torch.Tensor:
    """Return, per jet, one plus the index of the last slot with a non-zero input (0 if none).

    ``x`` has shape ``[N, slots, features]``.
    """
    filled = (x != 0).any(dim=2)
    slots = torch.arange(1, x.shape[1] + 1, device=x.device)
    return (filled * slots).amax(dim=1) if x.shape[0] else torch.zeros(0, dtype=torch.long, device=x.device)


def _padding_states(lstm: nn.LSTM, pad: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM states ``(h, c)``, each ``[slots + 1, hidden]``, after 0 ... ``slots`` padded steps."""
    h = torch.zeros(1, 1, lstm.hidden_size, dtype=pad.dtype, device=pad.device)
    c = torch.zeros_like(h)
    hs, cs = [h[0, 0]], [c[0, 0]]
    step = pad.reshape(1, 1, -1)
    for _ in range(slots):
        _, (h, c) = lstm(step, (h, c))
        hs.append(h[0, 0])
        cs.append(c[0, 0])
    return torch.stack(hs), torch.stack(cs)


def bucketed_last_output(
    lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor, *, group_size: int = GROUP_SIZE
) -> torch.Tensor:
    """Return the last LSTM output over the reversed sequence ``x`` ``[N, L, C]``, skipping padding.

    Method: jets are sorted by ``lengths`` (filled slots) and cut into groups of about
    ``group_size``. Each group runs the ordinary dense LSTM over the last ``m`` steps of
    the reversed sequence, where ``m`` is the longest filled length in the group, starting
    from the state after ``L - m`` padded steps. ``pad`` is the ``[C]`` vector that every
    padded slot becomes. Equals ``lstm(x.flip(1))[0][:, -1]``.
    """
    n_jets, slots, _ = x.shape
    table_h, table_c = _padding_states(lstm, pad, slots)
    result = table_h[slots - lengths]
    if n_jets == 0 or int(lengths.max()) == 0:
        return result
    order = torch.argsort(lengths)
    reversed_x = x.flip(1)
    for index in torch.tensor_split(order, max(1, n_jets // group_size)):
        steps = int(lengths[index].max())
        if steps == 0:
            continue
        start = slots - steps
        initial = tuple(t[start].expand(1, len(index), -1).contiguous() for t in (table_h, table_c))
        outputs, _ = lstm(reversed_x[index, start:], initial)
        result[index] = outputs[:, -1]
    return result


class BucketedDeepJet(nn.Module):
    """Eval-mode DeepJet whose LSTMs run over the filled slots of each jet only.

    Wraps an ``advcalib.models.DeepJet`` (weights shared, not copied). ``forward`` takes
    and returns what ``DeepJet.forward`` does; calling it on a module in training mode
    raises ``RuntimeError``, because dropout and batch statistics make padded slots
    differ between jets.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, glob: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        model = self.model
        if model.training:
            raise RuntimeError("BucketedDeepJet needs the wrapped DeepJet in eval mode; call model.eval() first")
        lengths = [sequence_lengths(x) for x in (cpf, npf, sv)]
        glob = model.global_bn(glob)
        sequences = model.InputProcess(cpf, npf, sv)
        zeros = [torch.zeros(1, *x.shape[1:], dtype=x.dtype, device=x.device) for x in (cpf, npf, sv)]
        pads = [p[0, 0] for p in model.InputProcess(*zeros)]
        outputs = [glob]
        for group, sequence, n, pad in zip(_GROUPS, sequences, lengths, pads):
            last = bucketed_last_output(getattr(model, f"{group}_lstm"), sequence, n, pad)
            outputs.append(getattr(model, f"{group}_bn")(last))
        return model.Linear(model.DenseClassifier(torch.cat(outputs, dim=1)))
