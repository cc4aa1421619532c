"""Robustness of flavour taggers: AUCs under adversarial attacks and systematic shifts.

For every model and perturbation the BvsL, CvsB, CvsL and BvsC ROC curves are computed
on jets with truth classes (CMS definitions, :mod:`advcalib.training.metrics`).
Perturbations, each also with the impact cap ``cap`` (shift <= cap * |x|, suffix
``_cap<cap>``):

* ``clean``;
* ``fgsm_<eps>``, ``ngm_<eps>``, ``pgd_<eps>``: white-box attacks crafted against the
  model itself (needs ``Tagger.module``);
* ``transfer_fgsm_<eps>_from_<A>``: FGSM jets crafted against model A, fed to this model;
* ``noise_<sigma>``: Gaussian smearing, ``shift_up_<eps>`` / ``shift_down_<eps>``: all
  movable inputs shifted by ``+-eps * scale``; these need no gradient and run for ONNX
  models too.

Step widths are each model's stored ``feature_scales``. A model without them (ONNX) uses
those of the first model that has them, else scales computed on the evaluated jets.
Results go to ``robustness.json`` and ``robustness.csv`` (one row per model, perturbation
and discriminator), with ROC and input-feature plots (:mod:`advcalib.evaluate_plots`).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from advcalib.attacks import PerturbationSpace, coherent_shift, feature_scales, fgsm, gaussian_noise, ngm, pgd
from advcalib.evaluate_plots import PLOT_FEATURES_GROUPS, plot_feature_values
from advcalib.models import Tagger
from advcalib.training.inference import craft
from advcalib.training.metrics import ROC_DEFINITIONS, discriminator_aucs
from advcalib.training.sample import JetSample, model_targets

logger = logging.getLogger(__name__)

DISCRIMINATORS: tuple[str, ...] = tuple(ROC_DEFINITIONS)


class EvaluateConfig(BaseModel):
    """Attack sizes of a robustness evaluation."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(0.01, gt=0, description="FGSM, NGM, PGD and shift size in units of the feature scale")
    pgd_steps: int = Field(5, ge=1, description="number of PGD steps")
    pgd_step_size: float | None = Field(None, gt=0, description="PGD step in units of the feature scale (default 2.5 eps / steps)")
    noise_sigma: float = Field(0.05, gt=0, description="width of the Gaussian noise in units of the feature scale")
    cap: float = Field(0.2, gt=0, description="impact cap: shifts limited to cap * |x| in the capped variants")
    seed: int = Field(1, description="seed of the Gaussian noise")
    batch_size: int = Field(4096, ge=1, description="jets per batch for prediction and crafting")


@dataclass
class Evaluation:
    """AUCs per model, perturbation and discriminator, plus what is needed for plots."""

    aucs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    features: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _scales_for(taggers: dict[str, Tagger], sample: JetSample) -> dict[str, dict[str, np.ndarray]]:
    fallback = next((t.feature_scales for t in taggers.values() if t.feature_scales is not None), None)
    if fallback is None:
        fallback = feature_scales(sample.inputs)
    return {name: t.feature_scales if t.feature_scales is not None else fallback for name, t in taggers.items()}


def _white_box(tagger: Tagger, space: PerturbationSpace, sample: JetSample, config: EvaluateConfig) -> Iterator[tuple[str, tuple[np.ndarray, ...]]]:
    """Yield FGSM, NGM and PGD jets crafted against the tagger's own module, with and without cap."""
    module = tagger.module
    targets = model_targets(sample.labels, tagger.architecture)
    eps = _fmt(config.epsilon)
    methods = {
        "fgsm": fgsm,
        "ngm": ngm,
        "pgd": partial(pgd, steps=config.pgd_steps, step_size=config.pgd_step_size),
    }
    for method, function in methods.items():
        for cap in (None, config.cap):
            def attack(inputs, batch_targets, epsilon, function=function, cap=cap):  # noqa: ANN001, ANN202
                return function(module, inputs, batch_targets, space, epsilon=epsilon, restrict_impact=cap)

            name = f"{method}_{eps}" + ("" if cap is None else f"_cap{_fmt(cap)}")
            yield name, craft(attack, sample.inputs, targets, epsilon=config.epsilon, batch_size=config.batch_size)


def _systematic(space: PerturbationSpace, sample: JetSample, config: EvaluateConfig) -> Iterator[tuple[str, tuple[np.ndarray, ...]]]:
    """Yield jets with Gaussian noise and coherent shifts up and down, with and without cap."""
    import torch

    eps, sigma = _fmt(config.epsilon), _fmt(config.noise_sigma)
    for cap in (None, config.cap):
        suffix = "" if cap is None else f"_cap{_fmt(cap)}"
        generator = torch.Generator().manual_seed(config.seed)
        variants = {
            f"noise_{sigma}{suffix}": lambda x, b, e: gaussian_noise(x, space, sigma=config.noise_sigma, generator=generator, restrict_impact=cap),
            f"shift_up_{eps}{suffix}": lambda x, b, e: coherent_shift(x, space, epsilon=config.epsilon, restrict_impact=cap),
            f"shift_down_{eps}{suffix}": lambda x, b, e: coherent_shift(x, space, epsilon=-config.epsilon, restrict_impact=cap),
        }
        for name, attack in variants.items():
            yield name, craft(attack, sample.inputs, sample.labels, epsilon=config.epsilon, batch_size=config.batch_size)


def _record(result: Evaluation, model: str, perturbation: str, tagger: Tagger, arrays: tuple[np.ndarray, ...], labels: np.ndarray, batch_size: int) -> None:
    from advcalib.training.metrics import discriminator_scores

    probs = tagger.predict(arrays, batch_size=batch_size)
    result.aucs.setdefault(model, {})[perturbation] = discriminator_aucs(probs, labels, DISCRIMINATORS)
    result.scores[(model, perturbation)] = discriminator_scores(probs)
    if len(arrays) == len(PLOT_FEATURES_GROUPS):
        result.features[(model, perturbation)] = plot_feature_values(arrays)


def evaluate_taggers(taggers: dict[str, Tagger], sample: JetSample, *, config: EvaluateConfig) -> Evaluation:
    """Compute AUCs of every tagger under every perturbation (see the module docstring).

    Models without a differentiable module get the clean, noise and shift rows. Their
    white-box rows are skipped with a logged note (also in ``notes``), but they still
    receive FGSM jets crafted against the other models (transfer rows).
    """
    result = Evaluation()
    scales = _scales_for(taggers, sample)
    transferable = {f"fgsm_{_fmt(config.epsilon)}", f"fgsm_{_fmt(config.epsilon)}_cap{_fmt(config.cap)}"}
    crafted: dict[str, dict[str, tuple[np.ndarray, ...]]] = {}
    for name, tagger in taggers.items():
        logger.info("evaluating model %s", name)
        space = PerturbationSpace.build(scales[name])
        variants = itertools.chain([("clean", sample.inputs)], _systematic(space, sample, config))
        if tagger.module is not None:
            variants = itertools.chain(variants, _white_box(tagger, space, sample, config))
        else:
            note = f"model {name} ({tagger.kind}) has no differentiable module: white-box and transfer attacks skipped"
            logger.warning(note)
            result.notes.append(note)
        for perturbation, arrays in variants:
            _record(result, name, perturbation, tagger, arrays, sample.labels, config.batch_size)
            if perturbation in transferable:
                crafted.setdefault(name, {})[perturbation] = arrays
    _transfer(result, taggers, crafted, sample, config)
    return result


def _transfer(
    result: Evaluation,
    taggers: dict[str, Tagger],
    crafted: dict[str, dict[str, tuple[np.ndarray, ...]]],
    sample: JetSample,
    config: EvaluateConfig,
) -> None:
    """Feed FGSM jets crafted against each model to every other model of the same architecture."""
    eps = _fmt(config.epsilon)
    for source, attacks in crafted.items():
        for target, tagger in taggers.items():
            if target == source or tagger.architecture != taggers[source].architecture:
                continue
            for suffix in ("", f"_cap{_fmt(config.cap)}"):
                arrays = attacks[f"fgsm_{eps}{suffix}"]
                name = f"transfer_fgsm_{eps}{suffix}_from_{source}"
                _record(result, target, name, tagger, arrays, sample.labels, config.batch_size)


def write_tables(result: Evaluation, out_dir: Path, *, config: EvaluateConfig, models: dict[str, str], n_jets: int) -> tuple[Path, Path]:
    """Write ``robustness.csv`` (model, perturbation, discriminator, auc) and ``robustness.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "robustness.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "perturbation", "discriminator", "auc"])
        for model, perturbations in result.aucs.items():
            for perturbation, aucs in perturbations.items():
                for disc, value in aucs.items():
                    writer.writerow([model, perturbation, disc, f"{value:.6f}"])
    json_path = out_dir / "robustness.json"
    payload = {
        "settings": config.model_dump(),
        "models": models,
        "n_jets": n_jets,
        "notes": result.notes,
        "auc": result.aucs,
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    return csv_path, json_path
