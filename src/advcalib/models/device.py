"""Choice of the torch device for inference and training."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the torch device to run on: CUDA when available for ``None``, else the request.

    ``device`` is ``None`` (automatic), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``. Raises ``ValueError`` for an unknown device string and for a CUDA
    request on a machine where ``torch.cuda.is_available()`` is False.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"invalid device {device!r}: {err}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use device='cpu' or None")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return resolved
