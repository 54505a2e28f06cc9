"""Quantized students on disk: ``checkpoints/quantized/<mode>/`` with ``model.safetensors`` + ``quantized.json``.

    save_quantized(model, "checkpoints/quantized/int4", mode="int4", preset="tiny", source=ckpt)
    model, meta = load_quantized("checkpoints/quantized/int4")
    qset = QuantizedSet.open("checkpoints/quantized")          # every <mode>/ folder's metadata, no weights yet
    qset.modes, qset["int4"].preset, qset["int4"].load()       # the model, loaded once and kept

The weights are torchao tensor subclasses, flattened to plain tensors plus JSON metadata by torchao's
safetensors support (its allow-list of classes rebuilds them), so loading never unpickles anything. Loading
builds the preset, applies the same mode (which creates the quantized layout), then loads the stored
values over it. Both files are written to a temporary name and renamed, ``quantized.json`` last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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


def read_meta(path: str | Path) -> dict:
    """The checked ``quantized.json`` of a ``save_quantized`` folder (no weights read); one-line errors name the
    file and the field."""
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
    return meta


def load_quantized(path: str | Path, device: str = "cpu", meta: dict | None = None):
    """(model in eval mode, metadata) from a ``save_quantized`` folder; one-line errors name the file. ``meta``:
    its :func:`read_meta`, when already read."""
    root = Path(path)
    weights = root / WEIGHTS
    meta = meta if meta is not None else read_meta(root)
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


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """One mode's quantized model as Stage 4 hands it on: the ``<mode>/`` folder, its checked metadata, and the
    model itself once loaded (or while the stage that made it still holds it)."""

    mode: str
    """A mode of :data:`sam3m4.quantize.modes.MODES`."""
    path: Path
    """The folder (``model.safetensors`` + ``quantized.json``)."""
    meta: dict
    """``quantized.json`` (:class:`~sam3m4.schemas.quantize.QuantizedMeta`: mode, preset, kind, source, extras)."""
    _model: list = field(default_factory=list, repr=False)
    """The model once loaded (a one-element list: the dataclass is frozen, the model is loaded on first use)."""

    @classmethod
    def open(cls, folder: "QuantizedModel | str | Path") -> "QuantizedModel":
        """The folder's metadata, checked (weights are read by :meth:`load`); an opened one is returned as it is."""
        if isinstance(folder, QuantizedModel):
            return folder
        meta = read_meta(folder)
        return cls(mode=meta["mode"], path=Path(folder), meta=meta)

    @classmethod
    def held(cls, model, folder: str | Path, meta: dict) -> "QuantizedModel":
        """A model just saved to ``folder`` (with ``meta``), kept in memory so that nothing rereads it."""
        return cls(mode=meta["mode"], path=Path(folder), meta=dict(meta), _model=[model])

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def preset(self) -> str:
        return self.meta["preset"]

    @property
    def kind(self) -> str:
        """``student`` or ``tracker``."""
        return self.meta.get("kind", "student")

    @property
    def source(self) -> str | None:
        """The checkpoint it was quantized from (as recorded)."""
        return self.meta.get("source")

    def load(self):
        """The model in eval mode on the CPU: read from :attr:`weights` on first use, then the same object."""
        if not self._model:
            self._model.append(load_quantized(self.path, meta=self.meta)[0])
        return self._model[0]

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, eq=False)
class QuantizedSet:
    """Stage 4's output folder as one object: mode -> :class:`QuantizedModel` (``<dir>/<mode>/``), in
    :data:`~sam3m4.quantize.modes.MODES` order. ``os.fspath`` gives the folder, so path-taking code still works."""

    dir: Path
    models: dict
    """Mode -> :class:`QuantizedModel`."""

    @classmethod
    def open(cls, folder: "QuantizedSet | str | Path") -> "QuantizedSet":
        """Every ``<mode>/`` folder under ``folder`` that holds a saved model (metadata checked, weights not read
        yet); an opened set is returned as it is. A folder with none is a one-line :class:`DataFormatError`."""
        if isinstance(folder, QuantizedSet):
            return folder
        root = Path(folder)
        models = {m: QuantizedModel.open(root / m) for m in MODES if (root / m / META).is_file()}
        if not models:
            raise DataFormatError(f"{root}: no quantized model folders (<mode>/{META}); make them with "
                                  f"`sam3m4 quantize --mode compare --out {root}`")
        return cls(dir=root, models=models)

    @property
    def modes(self) -> list[str]:
        return list(self.models)

    def __getitem__(self, mode: str) -> QuantizedModel:
        if mode not in self.models:
            raise DataFormatError(f"{self.dir}: {mode}/: no quantized model for this mode (has "
                                  f"{', '.join(self.models) or 'none'})")
        return self.models[mode]

    def __contains__(self, mode: str) -> bool:
        return mode in self.models

    def __fspath__(self) -> str:
        return str(self.dir)
