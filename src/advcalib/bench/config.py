"""Settings of a benchmark run, with the sizes of a full and of a quick (smoke-test) run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SectionName = Literal["roofline", "inference", "inputs", "processor", "training", "scaling"]
SECTIONS: tuple[str, ...] = ("roofline", "inputs", "inference", "processor", "training", "scaling")


class BenchConfig(BaseModel):
    """Sections, sizes and device of one benchmark run."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="folder for bench.json, bench.md and the generated samples")
    device: str = Field("cpu", description="torch device of the matmul, inference and processor measurements: cpu, cuda, cuda:N")
    cms_models: Path | None = Field(None, description="folder with DeepJet_Run3_122X.onnx and DeepFlavourV03_10X.onnx")
    sections: tuple[SectionName, ...] = Field(SECTIONS, description="benchmarks to run, in this order")
    threads: int | None = Field(None, ge=1, description="'all threads' count; default: the cores this process may use")
    batch_sizes: tuple[int, ...] = Field((256, 1024, 4096, 8192), min_length=1, description="inference batch sizes [jets]")
    inference_jets: int = Field(4096, ge=1, description="jets per timed inference pass (at least one batch)")
    repeats: int = Field(2, ge=1, description="timed passes per measurement; the fastest counts")
    matmul_size: int = Field(2048, ge=16, description="side of the square float32 matrices of the roofline")
    sample_events: int = Field(30_000, ge=50, description="generated DY events of the processor sample (see samples.processor_preset)")
    input_events: int = Field(3000, ge=50, description="generated ttbar events of the input-building sample")
    chunksize: int = Field(100_000, ge=1, description="events per chunk of the processor benchmark")
    scaling_chunksize: int = Field(10_000, ge=1, description="events per chunk of the Dask runs (several chunks per file)")
    scaling_tree_reduction: int = Field(20, ge=2, description="chunk outputs added per reduction task in the Dask runs")
    train_jets: int = Field(8192, ge=16, description="jets in the training sample of one epoch")
    train_batch_size: int = Field(1024, ge=2, description="jets per optimiser step in the training benchmark")
    scaling_files: tuple[int, ...] = Field((1, 2, 4), min_length=1, description="file counts of the memory scan")
    seed: int = Field(1, description="seed of the generated samples and random inputs")

    @field_validator("batch_sizes", "scaling_files")
    @classmethod
    def _positive_increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value) or list(value) != sorted(set(value)):
            raise ValueError(f"invalid sizes {list(value)}: expected positive, increasing values without repeats")
        return value

    @classmethod
    def quick(cls, out: Path, **overrides: object) -> BenchConfig:
        """Return a configuration with tiny sizes that runs every code path, for smoke tests."""
        sizes: dict[str, object] = dict(
            batch_sizes=(256,), inference_jets=256, repeats=1, matmul_size=128, sample_events=300,
            input_events=100, train_jets=128, train_batch_size=64, scaling_files=(1, 2), scaling_chunksize=200,
        )
        return cls(out=out, **(sizes | overrides))
