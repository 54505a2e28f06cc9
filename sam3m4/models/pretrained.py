"""Pretrained student initialisation: timm ImageNet weights into the student's backbone, offline.

``student_init`` (a distillation config key) names the weights:

* a file: a timm state dict of the *classification* model (``timm.create_model(name).state_dict()``) as
  ``.safetensors`` or ``.pth``/``.pt``/``.bin`` (read with ``torch.load(weights_only=True)``: no unpickling
  of objects); a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and a DDP ``module.`` prefix are accepted;
* a Hugging Face model id (``timm/repvit_m0_9.dist_450e_in1k``) or a timm name with tag
  (``repvit_m0_9.dist_450e_in1k``, resolved to its ``hf_hub_id``), looked up in the local Hugging Face cache
  only; when missing, one line says how to provide it.

    report = init_backbone(student.image_encoder.backbone, "weights/repvit_m0_9.safetensors")
    report.loaded, report.missing, report.unexpected, report.mismatched

The backbone is timm's ``features_only`` wrapper, whose keys flatten the top-level module path
(``stem.in_conv.conv.weight`` -> ``stem_in_conv.conv.weight``); keys are matched with dots and underscores
treated alike. The classifier head has no place in the backbone: its keys are ``unexpected`` and reported,
as is every backbone key the file does not fill (``missing``) and every key whose shape differs (``mismatched``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.checkpoint import atomic_save_safetensors

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


@dataclass
class InitReport:
    """What ``init_backbone`` loaded (stored in every checkpoint under ``student_init``)."""

    source: str
    """``student_init`` as given (file path or model id)."""
    file: str
    """The weights file read (resolved in the HF cache for a model id)."""
    sha256: str
    """16 hex digits of the file's sha256."""
    loaded: int
    """Backbone tensors filled from the file."""
    total: int
    """Backbone tensors in all."""
    missing: list[str] = field(default_factory=list)
    """Backbone keys the file has no value for (they keep their random init)."""
    unexpected: list[str] = field(default_factory=list)
    """File keys with no place in the backbone (the classifier head, other architectures)."""
    mismatched: list[str] = field(default_factory=list)
    """``key: file (..) vs backbone (..)`` shape differences (not loaded)."""

    def summary(self) -> str:
        """One line: loaded/total and the first unmatched keys of each kind."""
        parts = [f"student_init {self.source}: loaded {self.loaded}/{self.total} backbone tensors"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if keys:
                parts.append(f"{len(keys)} {name} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def _how_to_provide(source: str) -> str:
    return (f"on a machine with network run `huggingface-cli download {source}` and copy the cache "
            f"(~/.cache/huggingface/hub) here, or save `timm.create_model(<name>, pretrained=True).state_dict()` "
            f"with safetensors.torch.save_file and set student_init to that file")


def resolve_weights(source: str) -> Path:
    """``student_init`` -> a local weights file (a path, or a model id found in the local HF cache)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"student_init {source}: folder holds none of {', '.join(WEIGHT_FILES)}")
    repo = source.removeprefix("hf-hub:")
    if "/" not in repo:  # a timm name (with tag): its hub id
        import timm

        cfg = timm.models.get_pretrained_cfg(repo)
        if cfg is None or not getattr(cfg, "hf_hub_id", None):
            raise ConfigError(f"student_init {source}: not a file, and not a timm model name with hub weights")
        repo = cfg.hf_hub_id
    if repo.count("/") != 1 or source.startswith((".", "/", "~")):
        raise ConfigError(f"student_init {source}: no such file")
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    raise ConfigError(f"student_init {source}: {repo} is not in the local Hugging Face cache (offline); "
                      f"{_how_to_provide(repo)}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or torch file (``weights_only=True``), unwrapped and without ``module.``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif path.suffix in PICKLE_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DataFormatError(f"{path}: unknown weights format (expected .safetensors, .pth, .pt or .bin)")
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a torn file, a pickle with objects: one line naming the file
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(f"{path}: cannot read weights ({first})") from exc
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataFormatError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _norm(key: str) -> str:
    return key.replace(".", "_")


def init_backbone(backbone: nn.Module, source: str) -> InitReport:
    """Load ``source``'s weights into ``backbone`` (a timm ``features_only`` model) where names and shapes
    match; everything else is listed in the returned report (nothing is silently dropped)."""
    file = resolve_weights(source)
    state = read_state_dict(file)
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    own = backbone.state_dict()
    by_norm: dict[str, str] = {}
    for key in own:
        by_norm.setdefault(_norm(key), key)
        by_norm.setdefault(_norm(key).removeprefix("model_"), key)  # FeatureGetterNet wraps the model as .model
    new, unexpected, mismatched = {}, [], []
    for key, value in state.items():
        target = by_norm.get(_norm(key))
        if target is None:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(own[target].shape):
            mismatched.append(f"{key}: file {tuple(value.shape)} vs backbone {tuple(own[target].shape)}")
        else:
            new[target] = value.to(own[target].dtype)
    missing = [k for k in own if k not in new and not k.endswith("num_batches_tracked")]
    backbone.load_state_dict(new, strict=False)
    return InitReport(source=source, file=str(file), sha256=h.hexdigest()[:16], loaded=len(new),
                      total=len(own), missing=missing, unexpected=unexpected, mismatched=mismatched)


def save_timm_state_dict(name: str, out: str | Path, seed: int = 0) -> Path:
    """``timm.create_model(name)`` (random init, ``seed``) state dict as safetensors at ``out`` (atomic): the
    file format ``student_init`` reads; a stand-in for downloaded ImageNet weights in tests and the rehearsal."""
    import os

    import timm
    torch.manual_seed(seed)
    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as exc:
        raise ConfigError(f"backbone '{name}': {exc}") from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()}, out, metadata={"timm": name})
    return out
