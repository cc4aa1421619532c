"""Plots of a robustness evaluation: ROC curves and input features before and after attacks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from advcalib import spec  # noqa: E402
from advcalib.training.metrics import ROC_DEFINITIONS, roc_curve, roc_inputs  # noqa: E402

if TYPE_CHECKING:
    from advcalib.evaluate import Evaluation

#: Input groups the feature plots read (DeepJet only).
PLOT_FEATURES_GROUPS = spec.DEEPJET_GROUPS
#: (group, slot, feature) shown before and after each attack: strongly discriminating inputs.
PLOT_FEATURES: tuple[tuple[str, int, str], ...] = (
    ("global", 0, "TagVarCSV_trackSip2dSigAboveCharm"),
    ("charged", 0, "Cpfcan_BtagPf_trackSip2dSig"),
    ("charged", 0, "Cpfcan_BtagPf_trackSip3dVal"),
    ("vertex", 0, "sv_mass"),
)
#: Axis names of the flavour letters in discriminator names.
JET_NAMES = {"B": "b-jet", "C": "c-jet", "L": "light-jet"}
#: Curves drawn per ROC plot, besides clean (prefixes of perturbation names).
ROC_CURVES = ("fgsm_", "ngm_", "pgd_", "noise_", "shift_up_", "shift_down_")


def plot_feature_values(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    """Extract the ``PLOT_FEATURES`` columns of DeepJet inputs as ``[N, len(PLOT_FEATURES)]``."""
    columns = []
    for group_name, slot, feature in PLOT_FEATURES:
        group = spec.group(group_name)
        array = arrays[spec.DEEPJET_GROUPS.index(group)]
        column = array[:, group.index(feature)] if group.slots == 1 else array[:, slot, group.index(feature)]
        columns.append(column)
    return np.stack(columns, axis=1)


def _label(perturbation: str) -> str:
    return perturbation.replace("_", " ")


def plot_rocs(result: Evaluation, labels: np.ndarray, out_dir: Path) -> list[Path]:
    """Draw one ROC figure per model and discriminator (signal efficiency vs. mistag rate, log y)."""
    paths = []
    for model, perturbations in result.aucs.items():
        curves = [p for p in perturbations if p == "clean" or p.startswith(ROC_CURVES)]
        for disc in ROC_DEFINITIONS:
            fig, ax = plt.subplots(figsize=(6, 5))
            for perturbation in curves:
                signal, background = roc_inputs(result.scores[(model, perturbation)], labels, disc)
                if len(signal) == 0 or len(background) == 0:
                    continue
                mistag, efficiency = roc_curve(signal, background)
                style = ":"
                if perturbation == "clean":
                    style = "-"
                elif "cap" in perturbation:
                    style = "--"
                auc = perturbations[perturbation][disc]
                ax.plot(efficiency, np.maximum(mistag, 1e-4), style, label=f"{_label(perturbation)} (AUC {auc:.3f})")
            signal_name, background_name = (JET_NAMES[part] for part in disc.split("vs"))
            ax.set_xlabel(f"{signal_name} efficiency")
            ax.set_ylabel(f"{background_name} mistag rate")
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 1)
            ax.set_title(f"{model}: {disc}", loc="left")
            ax.legend(fontsize="x-small", loc="lower right")
            paths.append(_save(fig, out_dir / f"roc_{model}_{disc}.png"))
    return paths


def plot_features(result: Evaluation, out_dir: Path) -> list[Path]:
    """Histogram each ``PLOT_FEATURES`` input before and after every attack, per model.

    Zero values (padding and defaults, never moved) are left out of the histograms.
    """
    paths = []
    models = sorted({model for model, _ in result.features})
    for model in models:
        clean = result.features.get((model, "clean"))
        if clean is None:
            continue
        perturbations = [p for (m, p) in result.features if m == model and p != "clean" and p.startswith(ROC_CURVES)]
        for column, (group_name, slot, feature) in enumerate(PLOT_FEATURES):
            values = clean[:, column][clean[:, column] != 0]
            if values.size == 0:
                continue
            edges = np.linspace(*np.percentile(values, [0.5, 99.5]), 41)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.hist(values, bins=edges, histtype="stepfilled", alpha=0.3, color="k", label="clean")
            for perturbation in perturbations:
                moved = result.features[(model, perturbation)][:, column]
                ax.hist(moved[moved != 0], bins=edges, histtype="step", label=_label(perturbation))
            ax.set_xlabel(feature if group_name == "global" else f"{feature} (slot {slot})")
            ax.set_ylabel("jets")
            ax.set_title(model, loc="left")
            ax.legend(fontsize="xx-small", ncol=2)
            paths.append(_save(fig, out_dir / f"feature_{model}_{feature}.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
