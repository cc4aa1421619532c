"""Per-epoch history table and robustness plot of a training run."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from advcalib.training.validation import TRACKED  # noqa: E402


def write_history(history: list[dict[str, float]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``robustness_per_epoch.csv`` and a plot of clean and FGSM AUCs per epoch."""
    csv_path = out_dir / "robustness_per_epoch.csv"
    columns = list(history[0])
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in history:
            writer.writerow({key: f"{record[key]:.6g}" for key in columns})
    png_path = out_dir / "robustness_per_epoch.png"
    epochs = [int(r["epoch"]) for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(TRACKED):
        color = f"C{i}"
        ax.plot(epochs, [r[f"auc_clean_{name}"] for r in history], "-o", color=color, label=f"{name} clean")
        ax.plot(epochs, [r[f"auc_fgsm_{name}"] for r in history], "--s", color=color, label=f"{name} FGSM (tracking)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("AUC (validation)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path
