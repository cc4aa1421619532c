"""Shared fixtures: locations of the real CMS files, which live outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI sets HYPOTHESIS_PROFILE=ci: the same examples on every run, so a failure reproduces.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
#: Real CMS files sit in ``shared/`` beside the checkout; ADVCALIB_SHARED overrides it.
SHARED = Path(os.environ.get("ADVCALIB_SHARED", REPO.parent / "shared"))
REAL_DATA = SHARED / "data" / "real"
CMS_MODELS = SHARED / "models"


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread, as timings and results on a shared CPU need."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real CMS file {path} not found; place the shared data folder beside the checkout or set ADVCALIB_SHARED")
    return path


@pytest.fixture
def real_pfnano() -> Path:
    return _require(REAL_DATA / "pfnano.root")


@pytest.fixture
def real_nano_dy() -> Path:
    return _require(REAL_DATA / "nano_dy.root")


@pytest.fixture
def real_nano_dimuon() -> Path:
    return _require(REAL_DATA / "nano_dimuon.root")


@pytest.fixture
def onnx_run2() -> Path:
    return _require(CMS_MODELS / "DeepFlavourV03_10X.onnx")


@pytest.fixture
def onnx_run3() -> Path:
    return _require(CMS_MODELS / "DeepJet_Run3_122X.onnx")
