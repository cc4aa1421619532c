"""``load_tagger``: open a packaged model, a checkpoint, TorchScript or a CMS ONNX network.

Every format is checked when it is loaded, before any event is read: the file must be of
the format its suffix names and must accept inputs of the shapes in ``advcalib.spec``.
"""

from __future__ import annotations

import io
import logging
from importlib import resources
from pathlib import Path

import torch

from advcalib.models.checkpoint import is_torchscript_archive, load_checkpoint
from advcalib.models.onnx_import import ONNX_OUTPUT, import_onnx_deepjet
from advcalib.models.onnx_tagger import OnnxTagger
from advcalib.models.tagger import Tagger, TorchTagger
from advcalib.spec import DEEPCSV, DEEPCSV_CLASSES, DEEPJET_CLASSES, DEEPJET_GROUPS, JET_PT

logger = logging.getLogger(__name__)

#: Names of the models shipped in ``advcalib/data/models/<name>.pt``.
PACKAGED_MODELS: tuple[str, ...] = ("nominal", "adversarial")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")
ONNX_SUFFIXES = (".onnx",)


def packaged_model_path(name: str) -> Path:
    """Return the path of the packaged checkpoint ``name``; FileNotFoundError if it is not installed."""
    path = Path(str(resources.files("advcalib") / "data" / "models" / f"{name}.pt"))
    if not path.is_file():
        raise FileNotFoundError(
            f"packaged model {name!r} is not installed (expected {path}); "
            "save a trained model there with advcalib.models.save_checkpoint, "
            "or pass the path of a checkpoint, TorchScript or ONNX file"
        )
    return path


def load_tagger(source: str | Path, *, device: str | torch.device | None = None, fast: bool = True) -> Tagger:
    """Load a flavour tagger from a packaged name or a file and check it before use.

    ``source``: "nominal" or "adversarial" (packaged checkpoints), or a path to an advcalib
    checkpoint (``.pt``, ``.pth``), a TorchScript archive (``.ts``, ``.torchscript``) or a
    CMS DeepJet ONNX network (``.onnx``). TorchScript ``forward`` must return logits.
    ``device``: None picks CUDA when available, else the CPU. ``fast`` sets ``Tagger.fast``:
    DeepJet checkpoints predict through ``advcalib.models.fast.FastDeepJet`` unless it is False.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError``, naming the file and
    what was expected, for an unknown suffix, a file of another format, or a model that
    does not take the input shapes of ``advcalib.spec``.
    """
    if isinstance(source, str) and source in PACKAGED_MODELS:
        return _load_checkpoint_tagger(packaged_model_path(source), name=source, device=device, fast=fast)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"model {source} not found; pass an existing file or one of {', '.join(PACKAGED_MODELS)}"
        )
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return _load_checkpoint_tagger(path, name=path.stem, device=device, fast=fast)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _load_torchscript_tagger(path, device=device, fast=fast)
    if suffix in ONNX_SUFFIXES:
        return _load_onnx_tagger(path, device=device, fast=fast)
    supported = CHECKPOINT_SUFFIXES + TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES
    raise ValueError(f"{path}: unknown model suffix {path.suffix!r}; supported suffixes: {', '.join(supported)}")


def _load_checkpoint_tagger(path: Path, *, name: str, device: str | torch.device | None, fast: bool) -> Tagger:
    model, info = load_checkpoint(path)
    return TorchTagger(
        model,
        name=name,
        kind="checkpoint",
        architecture=info["architecture"],
        device=device,
        feature_scales=info["feature_scales"],
        metadata=info["metadata"],
        fast=fast,
    )


def _probe_inputs(architecture: str) -> list[torch.Tensor]:
    groups = DEEPJET_GROUPS if architecture == "DeepJet" else (DEEPCSV,)
    return [torch.zeros((2, *group.shape)) for group in groups]


def _torchscript_architecture(module: torch.jit.ScriptModule, path: Path) -> str:
    """Find which input signature (DeepJet or DeepCSV) a TorchScript module accepts."""
    errors = []
    for architecture, n_classes in (("DeepJet", len(DEEPJET_CLASSES)), ("DeepCSV", len(DEEPCSV_CLASSES))):
        try:
            with torch.no_grad():
                output = module(*_probe_inputs(architecture))
        except Exception as err:  # TorchScript raises RuntimeError or its own errors for wrong signatures
            errors.append(f"{architecture}: {str(err).splitlines()[0]}")
            continue
        if isinstance(output, torch.Tensor) and tuple(output.shape) == (2, n_classes):
            return architecture
        errors.append(f"{architecture}: output {getattr(output, 'shape', type(output).__name__)}, expected [N, {n_classes}]")
    deepjet_shapes = ", ".join(f"{g.name} [N, {', '.join(map(str, g.shape))}]" for g in DEEPJET_GROUPS)
    raise ValueError(
        f"{path}: TorchScript model does not take DeepJet inputs ({deepjet_shapes}) returning [N, "
        f"{len(DEEPJET_CLASSES)}] logits, nor DeepCSV inputs [N, {len(DEEPCSV.features)}] returning "
        f"[N, {len(DEEPCSV_CLASSES)}]; " + "; ".join(errors)
    )


def _load_torchscript_tagger(path: Path, *, device: str | torch.device | None, fast: bool) -> Tagger:
    data = path.read_bytes()
    if not is_torchscript_archive(path):
        raise ValueError(f"{path} is not a TorchScript archive; save one with torch.jit.save(torch.jit.script(model), path)")
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except RuntimeError as err:
        raise ValueError(f"{path} is not a readable TorchScript archive: {err}") from None
    architecture = _torchscript_architecture(module, path)
    return TorchTagger(
        module, torchscript_bytes=data, name=path.stem, kind="torchscript", architecture=architecture, device=device,
        fast=fast,
    )


def _shape_text(shape: tuple | None) -> str:
    return "missing" if shape is None else "[N, " + ", ".join(map(str, shape)) + "]"


def _check_onnx_signature(session, path: Path) -> None:
    """Raise ValueError unless the ONNX inputs and output have the DeepJet shapes of ``advcalib.spec``."""
    expected = {g.onnx_name: g.shape for g in DEEPJET_GROUPS + (JET_PT,)}
    found = {i.name: tuple(i.shape[1:]) for i in session.get_inputs()}
    problems = [
        f"input {name} {_shape_text(found.get(name))}, expected {_shape_text(shape)}"
        for name, shape in expected.items()
        if found.get(name) != shape
    ]
    outputs = {o.name: tuple(o.shape[1:]) for o in session.get_outputs()}
    if outputs.get(ONNX_OUTPUT) != (len(DEEPJET_CLASSES),):
        problems.append(f"output {ONNX_OUTPUT} {_shape_text(outputs.get(ONNX_OUTPUT))}, expected [N, {len(DEEPJET_CLASSES)}]")
    if problems:
        raise ValueError(f"{path} is not a DeepJet ONNX network with the inputs of advcalib.spec: " + "; ".join(problems))


def _load_onnx_tagger(path: Path, *, device: str | torch.device | None, fast: bool) -> Tagger:
    import onnxruntime

    data = path.read_bytes()
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own InvalidProtobuf, Fail ... errors
        raise ValueError(f"{path} is not a readable ONNX model: {err}") from None
    _check_onnx_signature(session, path)
    try:
        torch_module = import_onnx_deepjet(path)
    except (ValueError, ImportError) as err:
        logger.info("%s runs through onnxruntime only, without a torch copy: %s", path, err)
        torch_module = None
    return OnnxTagger(
        data, torch_module=torch_module, name=path.stem, kind="onnx", architecture="DeepJet", device=device, fast=fast
    )
