"""Fast eval-mode inference of DeepJet: folded BatchNorms and no LSTM steps over padding.

Two changes of the computation order, which ``FastDeepJet`` turns on or off one by one:

* Folding: every BatchNorm is folded into the next linear layer and the 1x1
  convolutions run as matrix products (``advcalib.models.folding``).
* Bucketing: DeepJet reads each particle sequence back to front, so a jet with ``n``
  filled slots first feeds ``L - n`` padded (all-zero) slots into its LSTM. In eval
  mode every padded slot becomes the same vector after the input BatchNorm and the
  convolutions, so the LSTM state after ``k`` padded steps depends on ``k`` only. Those
  ``L + 1`` states are computed once on a batch of one. The jets are then sorted by
  filled length, and each group of similar jets runs the ordinary LSTM over its longest
  filled length only, starting from the matching padding state.

A slot counts as padding when it and every later slot of the jet are all zero. A real
candidate whose inputs are all zero behind the last non-zero one gives the same output
either way, because the computation depends on the input values only.

Both are the same function as ``DeepJet.forward`` and differ from it by float32
rounding only. Bucketing keeps the LSTM kernel and changes results by under 1e-6 in
probability. Folding changes the summation order of the linear layers. On the packaged
models it stays within 4e-6 of the eager probabilities, as close to a float64
evaluation as eager is. The Run 3 CMS network imported from ONNX amplifies rounding in
its vertex stack. On generated ttbar jets its eager float32 probabilities are 1.2e-4
from float64 and the folded ones 4.0e-4 (6e-6 on real PFNano jets). Any other summation
order, such as the matrix-product layout without folding, moves them by a similar amount.
"""

from __future__ import annotations

import torch
from torch import nn

from advcalib.models.folding import FoldedDeepJet, run_layers

_GROUPS = ("cpf", "npf", "vtx")
#: Jets per LSTM call: large enough for efficient matrix products, small enough for short groups.
GROUP_SIZE = 128
#: Jets per internal pass: larger batches are split so that intermediate tensors stay in cache.
MAX_BATCH = 1024


def sequence_lengths(x: torch.Tensor) -> torch.Tensor:
    """Return, per jet, one plus the index of the last slot with a non-zero input (0 if none).

    ``x`` has shape ``[N, slots, features]``.
    """
    filled = (x != 0).any(dim=2)
    slots = torch.arange(1, x.shape[1] + 1, device=x.device)
    return (filled * slots).amax(dim=1) if x.shape[0] else torch.zeros(0, dtype=torch.long, device=x.device)


def padding_states(lstm: nn.LSTM, pad: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    lstm: nn.LSTM,
    x: torch.Tensor,
    lengths: torch.Tensor,
    states: tuple[torch.Tensor, torch.Tensor],
    *,
    group_size: int = GROUP_SIZE,
) -> torch.Tensor:
    """Return the last LSTM output over the reversed sequence ``x`` ``[N, L, C]``, skipping padding.

    Method: jets are sorted by ``lengths`` (filled slots) and cut into groups of about
    ``group_size``. Each group runs the ordinary dense LSTM over the last ``m`` steps of
    the reversed sequence, where ``m`` is the longest filled length in the group, starting
    from the state after ``L - m`` padded steps. ``states`` are the padding states of
    :func:`padding_states`. Equals ``lstm(x.flip(1))[0][:, -1]``; jets without any filled
    slot take the padding state alone.
    """
    n_jets, slots, _ = x.shape
    table_h, table_c = states
    result = table_h[slots - lengths]
    if n_jets == 0:
        return result
    order = torch.argsort(lengths)
    # One copy to the host gives every group's length without a device sync per group.
    sorted_lengths = lengths[order].cpu()
    if int(sorted_lengths[-1]) == 0:
        return result
    reversed_x = x.flip(1)
    start_row = 0
    for index in torch.tensor_split(order, max(1, n_jets // group_size)):
        start_row += len(index)
        steps = int(sorted_lengths[start_row - 1])
        if steps == 0:
            continue
        start = slots - steps
        initial = tuple(t[start].expand(1, len(index), -1).contiguous() for t in (table_h, table_c))
        outputs, _ = lstm(reversed_x[index, start:], initial)
        result[index] = outputs[:, -1]
    return result


class FastDeepJet(nn.Module):
    """Eval-mode DeepJet with folded BatchNorms and LSTMs over the filled slots only.

    Wraps an ``advcalib.models.DeepJet`` (weights shared, not copied); ``forward`` takes
    and returns what ``DeepJet.forward`` does, for inference only: no gradient reaches
    the weights. ``fold`` runs the layers as folded matrix products (see
    ``advcalib.models.folding``), ``bucket`` skips the padded LSTM steps; both off gives
    the original computation. The folded weights and padding states are rebuilt when a
    parameter or buffer changes in place, or the input dtype, device or shapes change.
    Calling it on a module in training mode raises ``RuntimeError``, because dropout and
    batch statistics make padded slots differ between jets.
    """

    def __init__(
        self, model: nn.Module, *, fold: bool = True, bucket: bool = True, group_size: int = GROUP_SIZE, max_batch: int = MAX_BATCH
    ) -> None:
        super().__init__()
        self.model = model
        self.fold = fold
        self.bucket = bucket
        self.group_size = group_size
        self.max_batch = max_batch
        self._key: tuple | None = None
        self._folded: FoldedDeepJet | None = None
        self._states: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _prepare(self, shapes: list[torch.Size], like: torch.Tensor) -> None:
        model = self.model
        versions = tuple(p._version for p in model.parameters()) + tuple(b._version for b in model.buffers())
        key = (like.dtype, like.device, versions, tuple(shapes))
        if key == self._key:
            return
        # Ordinary tensors without autograd history, whatever mode the first call runs in,
        # so that later calls in another mode can use them.
        with torch.inference_mode(False), torch.no_grad():
            self._folded = FoldedDeepJet.build(model) if self.fold else None
            zeros = [torch.zeros(1, *shape, dtype=like.dtype, device=like.device) for shape in shapes]
            pads = [p[0, 0] for p in self._sequences(*zeros)]
            self._states = [
                padding_states(getattr(model, f"{g}_lstm"), pad, shape[0]) for g, pad, shape in zip(_GROUPS, pads, shapes)
            ]
        self._key = key

    def _sequences(self, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._folded is None:
            return self.model.InputProcess(cpf, npf, sv)
        out = []
        for group, x in zip(_GROUPS, (cpf, npf, sv)):
            n, slots, features = x.shape
            rows = run_layers(x.reshape(n * slots, features), self._folded.stacks[group])
            out.append(rows.reshape(n, slots, rows.shape[1]))
        return tuple(out)

    def _classify(self, glob: torch.Tensor, last: list[torch.Tensor]) -> torch.Tensor:
        model = self.model
        if self._folded is None:
            parts = [model.global_bn(glob)] + [getattr(model, f"{g}_bn")(h) for g, h in zip(_GROUPS, last)]
            return model.Linear(model.DenseClassifier(torch.cat(parts, dim=1)))
        x = run_layers(torch.cat([glob, *last], dim=1), self._folded.dense)
        weight, bias = self._folded.output
        return torch.addmm(bias, x, weight)

    def forward(self, glob: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        model = self.model
        if model.training:
            raise RuntimeError("FastDeepJet needs the wrapped DeepJet in eval mode; call model.eval() first")
        self._prepare([cpf.shape[1:], npf.shape[1:], sv.shape[1:]], cpf)
        if len(glob) > self.max_batch:
            parts = [self._forward(*(x[i : i + self.max_batch] for x in (glob, cpf, npf, sv))) for i in range(0, len(glob), self.max_batch)]
            return torch.cat(parts)
        return self._forward(glob, cpf, npf, sv)

    def _forward(self, glob: torch.Tensor, cpf: torch.Tensor, npf: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        model = self.model
        sequences = self._sequences(cpf, npf, sv)
        last = []
        for group, raw, sequence, states in zip(_GROUPS, (cpf, npf, sv), sequences, self._states):
            lstm = getattr(model, f"{group}_lstm")
            if self.bucket:
                last.append(bucketed_last_output(lstm, sequence, sequence_lengths(raw), states, group_size=self.group_size))
            else:
                last.append(lstm(sequence.flip(1))[0][:, -1])
        return self._classify(glob, last)
