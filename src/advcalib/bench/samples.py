"""Samples the benchmarks run on: generated PFNano files and untrained DeepJet checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from advcalib.generate import DatasetSpec, Preset, generate
from advcalib.models import DeepJet, save_checkpoint
from advcalib.models.loading import PACKAGED_MODELS, packaged_model_path

logger = logging.getLogger(__name__)


def processor_preset(events: int) -> Preset:
    """Simulated samples of the three calibration regions, ``events`` generated DY events.

    W+c keeps only events with a soft muon in a jet, as in the ``demo`` preset. The ttbar
    samples are smaller because their events carry more jets. Pseudo-data are left out
    because they cost the processor the same per event.
    """
    sizes = (("dy", events, "none"), ("wcharm", events, "soft_muon"), ("ttbar_semilep", events // 2, "none"),
             ("ttbar_dilep", events // 4, "none"))
    datasets = tuple(
        DatasetSpec(name=name, process=name, role="calibration", events=max(1, n), filter=kind) for name, n, kind in sizes
    )
    return Preset(name="bench_processor", lumi=1.0, datasets=datasets)


def processor_sample(out: Path, *, events: int, seed: int) -> Path:
    """Generate :func:`processor_preset` into ``out/processor`` (once); return its fileset.json."""
    target = out / "processor" / "fileset.json"
    if target.is_file():
        return target
    return generate(processor_preset(events), out / "processor", seed=seed)


def ttbar_sample(out: Path, *, events: int, seed: int, deepjet_inputs: bool) -> Path:
    """Generate one semileptonic ttbar file, with ``Jet_DeepJet_*`` branches when asked; return its path."""
    name = "ttbar_branches" if deepjet_inputs else "ttbar"
    folder = out / name
    path = folder / f"{name}.root"
    if path.is_file():
        return path
    preset = Preset(
        name=f"bench_{name}",
        lumi=1.0,
        datasets=(DatasetSpec(name=name, process="ttbar_semilep", role="training", events=events),),
    )
    generate(preset, folder, seed=seed, deepjet_inputs=deepjet_inputs)
    return path


def model_sources(out: Path, *, seed: int) -> tuple[dict[str, str], str]:
    """Return two DeepJet sources (nominal, adversarial) for the processor and what they are.

    The packaged models are used when installed. Otherwise two untrained DeepJet
    checkpoints are written to ``out/models``: inference costs the same for any weights.
    """
    try:
        return {name: str(packaged_model_path(name)) for name in PACKAGED_MODELS}, "packaged checkpoints"
    except FileNotFoundError:
        pass
    folder = out / "models"
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    for offset, name in enumerate(PACKAGED_MODELS):
        path = folder / f"{name}.pt"
        if not path.is_file():
            torch.manual_seed(seed + offset)
            save_checkpoint(path, DeepJet().eval(), config={}, feature_scales=None, metadata={"untrained": True})
        sources[name] = str(path)
    logger.info("packaged models not installed; using untrained checkpoints in %s", folder)
    return sources, "untrained DeepJet checkpoints (packaged models not installed)"
