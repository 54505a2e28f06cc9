"""Quantized students on disk: ``checkpoints/quantized/<mode>/`` with ``model.safetensors`` + ``quantized.json``.

    save_quantized(model, "checkpoints/quantized/int4", mode="int4", preset="tiny", source=ckpt)
    model, meta = load_quantized("checkpoints/quantized/int4")

The weights are torchao tensor subclasses, flattened to plain tensors plus JSON metadata by torchao's
safetensors support (its allow-list of classes rebuilds them), so loading never unpickles anything. Loading
builds the preset, applies the same mode (which creates the quantized layout), then loads the stored
values over it. Both files are written to a temporary name and renamed, ``quantized.json`` last.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn
from torchao.prototype.safetensors.safetensors_support import (flatten_tensor_state_dict,
                                                               unflatten_tensor_state_dict)

from sam3m4.checkpoint import atomic_save_safetensors, load_model_state
from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_path
from sam3m4.models.build import PRESETS, build_student
from sam3m4.models.video import StudentTracker
from sam3m4.quantize.modes import MODES, apply_mode, get_mode
from sam3m4.schemas import load_file as load_checked
from sam3m4.schemas.quantize import QuantizedMeta

WEIGHTS, META = "model.safetensors", "quantized.json"


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def save_quantized(model, out_dir: str | Path, *, mode: str, preset: str, source: str | Path | None = None,
                   extra: dict | None = None) -> Path:
    """Write ``model`` (a student or a tracker, quantized with ``mode``) under ``out_dir``; returns the weights
    path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    get_mode(mode)  # unknown -> ConfigError before anything is written
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors, metadata = flatten_tensor_state_dict(state)
    plain = {k for k, v in state.items() if type(v) in (torch.Tensor, nn.Parameter)}  # not torchao tensors
    # plain floating weights hold fp16 values (round_to_fp16): stored as fp16
    tensors = {k: (v.half() if k in plain and v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    atomic_save_safetensors(tensors, out / WEIGHTS, metadata=metadata)
    kind = "tracker" if hasattr(model, "memory") else "student"
    meta = {"mode": mode, "preset": preset, "kind": kind, "source": str(source) if source else None,
            **({"num_latents": model.num_latents} if kind == "tracker" else {}), **(extra or {})}
    _atomic_write(out / META, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return out / WEIGHTS


def load_quantized(path: str | Path, device: str = "cpu"):
    """(model in eval mode, metadata) from a ``save_quantized`` folder; one-line errors name the file."""
    root = Path(path)
    meta_path, weights = root / META, root / WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise DataFormatError(f"{root}: not a quantized model folder (needs {META} and {WEIGHTS}; "
                              "make one with `sam3m4 quantize --mode <mode> --ckpt ...`)")
    meta = load_checked(meta_path, QuantizedMeta).model_dump()  # types, kind, num_latents in [1, 4096]; extras kept
    if meta["mode"] not in MODES:
        raise DataFormatError(f"{meta_path}: mode: unknown {meta['mode']!r}; choices: {', '.join(MODES)}")
    if meta["preset"] not in PRESETS:
        raise DataFormatError(f"{meta_path}: preset: unknown student preset {meta['preset']!r}; choices: "
                              f"{', '.join(PRESETS)}")
    num_latents = meta["num_latents"]
    mode = get_mode(meta["mode"])
    try:
        tensors = load_file(str(weights))
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise DataFormatError(f"{weights}: unreadable safetensors file ({err})") from err
    model = build_student(meta["preset"])
    if meta.get("kind") == "tracker":
        model = StudentTracker(model, num_latents=num_latents)
    apply_mode(model, mode)
    try:
        state, leftover = unflatten_tensor_state_dict(tensors, metadata)
    except (ValueError, KeyError, TypeError) as err:
        raise DataFormatError(f"{weights}: metadata: does not describe torchao tensors ({err})") from err
    state.update(leftover)
    state = {k: v.float() if type(v) is torch.Tensor and v.is_floating_point() else v for k, v in state.items()}
    load_model_state(model, state, weights, field="weights", note=f"preset '{meta['preset']}' in mode '{mode.name}'",
                     assign=True)
    return model.eval().to(device), meta
