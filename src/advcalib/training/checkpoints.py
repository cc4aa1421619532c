"""Resume state written next to every epoch checkpoint: optimiser, scheduler and history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advcalib.models import load_checkpoint
from advcalib.training.config import TrainConfig

#: Settings that may differ between the interrupted and the resumed run.
RESUMABLE_CHANGES = frozenset({"epochs"})

#: Files a training run writes into its folder, and into each ``eps_*`` folder of an epsilon scan.
TRAINING_OUTPUTS = ("best.pt", "epoch_*.pt", "robustness_per_epoch.csv", "robustness_per_epoch.png")


@dataclass
class ResumeState:
    """Progress of a training run after ``epoch`` completed epochs."""

    epoch: int
    history: list[dict[str, float]]
    best_val_loss: float
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)


def state_path(checkpoint: Path) -> Path:
    """Path of the resume state that belongs to ``checkpoint`` (``epoch_003.pt`` -> ``epoch_003.state.pt``)."""
    return checkpoint.with_suffix(".state.pt")


def save_resume_state(checkpoint: Path, state: ResumeState) -> Path:
    """Write the resume state of ``checkpoint`` (plain tensors and numbers only)."""
    path = state_path(checkpoint)
    torch.save(
        {
            "epoch": state.epoch,
            "history": state.history,
            "best_val_loss": state.best_val_loss,
            "optimizer": state.optimizer,
            "scheduler": state.scheduler,
        },
        path,
    )
    return path


def _check_config(stored: dict[str, Any], config: TrainConfig, checkpoint: Path) -> None:
    current = config.model_dump()
    differing = sorted(
        key for key in current if key not in RESUMABLE_CHANGES and stored.get(key) != current[key]
    )
    if differing:
        details = ", ".join(f"{key}: {stored.get(key)!r} -> {current[key]!r}" for key in differing)
        raise ValueError(f"cannot resume from {checkpoint}: settings differ from the interrupted run ({details})")


def load_resume_state(
    checkpoint: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
) -> tuple[ResumeState, dict[str, np.ndarray]]:
    """Load weights, optimiser and scheduler state from an epoch checkpoint and its state file.

    Returns the resume state and the feature scales stored in the checkpoint.

    Raises:
        FileNotFoundError: when the ``.state.pt`` file beside the checkpoint is missing.
        ValueError: for other settings than the interrupted run or missing feature scales.
    """
    stored_model, info = load_checkpoint(checkpoint)
    _check_config(info["config"], config, checkpoint)
    if info["feature_scales"] is None:
        raise ValueError(f"cannot resume from {checkpoint}: it stores no feature scales")
    path = state_path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"resume state {path} not found; resume from an epoch_NNN.pt written by advcalib train")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(stored_model.state_dict())
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state = ResumeState(
        epoch=int(payload["epoch"]),
        history=list(payload["history"]),
        best_val_loss=float(payload["best_val_loss"]),
        optimizer=payload["optimizer"],
        scheduler=payload["scheduler"],
    )
    return state, info["feature_scales"]


def training_outputs(out_dir: Path) -> list[Path]:
    """Return the checkpoints and history files of earlier training runs in ``out_dir``.

    Covers ``out_dir`` itself, each ``eps_*`` folder of an epsilon scan and the scan's
    ``epsilon_scan.csv``. The input cache and the synthetic sample are not outputs of a
    run and are not returned.
    """
    folders = [out_dir, *sorted(path for path in out_dir.glob("eps_*") if path.is_dir())]
    found = {path for folder in folders for pattern in TRAINING_OUTPUTS for path in folder.glob(pattern)}
    found.update(out_dir.glob("epsilon_scan.csv"))
    return sorted(path for path in found if path.is_file())


def prepare_training_folder(out_dir: Path, *, force: bool, resume: Path | None) -> list[Path]:
    """Check that training may write into ``out_dir``; with ``force``, remove the earlier run's outputs.

    A folder that contains checkpoints is rejected unless ``resume`` is given, which
    continues in place, or ``force``, which removes the earlier checkpoints and history
    files first, so no epoch of the earlier run stays beside the new ones. The input
    cache and the synthetic sample are kept. Returns the removed files.

    Raises:
        FileExistsError: when ``out_dir`` holds checkpoints and neither option is set.
    """
    if resume is not None:
        return []
    earlier = training_outputs(out_dir) if out_dir.is_dir() else []
    if not earlier:
        return []
    if not force:
        names = ", ".join(path.relative_to(out_dir).as_posix() for path in earlier[:4])
        more = f" and {len(earlier) - 4} more" if len(earlier) > 4 else ""
        raise FileExistsError(
            f"training folder {out_dir} already contains checkpoints of an earlier run ({names}{more}); "
            "choose another --out, pass --resume OUT/epoch_NNN.pt to continue that run, "
            "or pass --force to remove them and train from scratch"
        )
    for path in earlier:
        path.unlink()
    return earlier
