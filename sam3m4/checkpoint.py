"""The checkpoint format: atomic writes, ``weights_only`` loads, keep-last-K + best, corrupt fallback, metadata.

A low layer (training writes checkpoints; predict, quantize, storage and the gates read them), so it imports
only :mod:`sam3m4.errors`, :mod:`sam3m4.fileio` and :mod:`sam3m4.paths`.

A checkpoint ``checkpoints/distillation/phase{P}_epoch{E}_step{S}.pt`` holds the *student* only (plus the
Phase 1 projection heads, which are distillation-only parameters): model, optimizer, scheduler, step,
epoch, the run's config and the RNG states of torch / numpy / python. Everything is stored as tensors and
plain Python types so that ``torch.load(path, weights_only=True)`` reads it (loading never unpickles
arbitrary objects). Files are written to a temporary name in the same folder and moved into place with
``os.replace``, so a killed run never leaves a half-written ``.pt`` under a real name.

A run killed during a save leaves its temporary file (``.<name>.<random>.tmp``), and one killed after a
logged step but before the next checkpoint leaves CSV rows past it; :func:`clean_interrupted` removes both
when a run starts (fresh or resumed), so no step is logged twice.

    save_checkpoint(ckpt_dir, phase=2, epoch=1, step=120, state={...}, keep_last=3)
    ck = Checkpoint.open("checkpoints/distillation/phase2_best.pt")   # read once; stages take ``ck``, not the path
    ck.kind, ck.preset, ck.phase, ck.config, ck.data_root, ck.sha256, ck.model
    path, state = load_latest(ckpt_dir, phase=2)   # falls back to the previous good file, with a warning
    clean_interrupted(ckpt_dir, phase=2, step=120, logs=["logs/distillation/phase2.csv"])

Metadata (format version 2): ``format_version``, ``kind`` (:data:`KIND_STUDENT`, an image student of Phase 1/2,
or :data:`KIND_TRACKER`, the video run's student + memory) and ``data_root`` (the SA-Co root it trained on).
Version 1 files have none of them; :func:`checkpoint_kind` and :func:`checkpoint_data_root` (what
:class:`Checkpoint` fills its fields with) read both, so old checkpoints still load (v1: ``phase`` 3 meant a
tracker; the data root was ``config.data_root`` for Phase 1/2 and ``config.data`` for the video run).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_path
from sam3m4.paths import best_name, checkpoint_name, video_checkpoint_name  # noqa: F401  (part of this API)

FORMAT_VERSION = 2
KIND_STUDENT, KIND_TRACKER = "student", "tracker"
KINDS = (KIND_STUDENT, KIND_TRACKER)
VIDEO_PHASE = 3  # the ``phase`` a video checkpoint carries (version 1 told the kinds apart by it alone)
NAME = re.compile(r"^phase(?P<phase>\d+)_epoch(?P<epoch>\d+)_step(?P<step>\d+)\.pt$")
VIDEO_NAME = re.compile(r"^video_epoch(?P<epoch>\d+)\.pt$")  # checkpoints/video_distillation/
# the temporary names this module writes (:func:`sam3m4.fileio.temporary_name`): ``.<name>.<pid><random>.tmp``;
# older versions also wrote ``.phase{P}_best.pt.tmp``
TMP_NAME = re.compile(r"^\.(?:phase(?P<phase>\d+)_(?:epoch\d+_step\d+|best)|(?P<video>video)_epoch\d+)\.pt"
                      r"(?:\.[A-Za-z0-9_]+)?\.tmp$")
REQUIRED_KEYS = ("model", "step", "epoch", "phase")
TEACHER_PREFIXES = ("teacher.", "module.teacher.")


def checkpoint_metadata(kind: str, data_root: str | Path | None) -> dict:
    """The version-2 metadata entries a checkpoint carries (plain types: ``weights_only``-loadable)."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind {kind!r}: expected one of {', '.join(KINDS)}")
    meta = {"format_version": FORMAT_VERSION, "kind": kind}
    if data_root:
        meta["data_root"] = str(data_root)
    return meta


def checkpoint_kind(state: dict) -> str:
    """:data:`KIND_STUDENT` or :data:`KIND_TRACKER`: the ``kind`` entry, or for a version-1 file its ``phase``."""
    if "kind" in state:
        return state["kind"]
    return KIND_TRACKER if state.get("phase") == VIDEO_PHASE else KIND_STUDENT


def checkpoint_data_root(state: dict, where) -> str | None:
    """The SA-Co data root a checkpoint trained on (None when it does not say). Version 1: ``config.data_root``
    (Phase 1/2) or ``config.data`` (the video run); a value that is not a string is a one-line
    :class:`DataFormatError` naming ``where`` and the key."""
    if "data_root" in state:
        return state["data_root"]
    config = state.get("config", {})
    key = "data_root" if config.get("data_root") else "data"
    stored = config.get(key)
    if stored is None or stored == "":
        return None
    if not isinstance(stored, str):
        raise DataFormatError(f"{where}: config.{key}: expected str, got {type(stored).__name__} (or pass --data)")
    return stored


# --- RNG state as tensors / plain types (weights_only-loadable) ------------------------------------------
def rng_state() -> dict:
    """torch (CPU + CUDA), numpy and python RNG states as tensors and plain types."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),  # (5056,) uint8
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # (624,) MT19937 words
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "numpy_name": str(np_name),
        "python_version": int(py_version),
        "python_state": torch.tensor(py_state, dtype=torch.int64),  # (625,)
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    np.random.set_state((state["numpy_name"], state["numpy_keys"].numpy().astype(np.uint32),
                         int(state["numpy_pos"]), int(state["numpy_has_gauss"]), float(state["numpy_gauss"])))
    random.setstate((int(state["python_version"]), tuple(int(x) for x in state["python_state"].tolist()),
                     state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- write ------------------------------------------------------------------------------------------------
def _check_student_only(state: dict) -> None:
    for key in state.get("model", {}):
        if key.startswith(TEACHER_PREFIXES):
            raise ValueError(f"checkpoint model state has teacher weights ({key}); only the student is saved")


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``."""
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> Path:
    """``safetensors`` file written through :func:`sam3m4.fileio.atomic_path`. ``safetensors.torch.save_file``
    stages its own ``.tmpXXXXXX`` file, which a killed writer leaves behind under a name no cleaner knows; the
    bytes are serialised here instead, so the only temporary file is the project's ``.<name>.<pid><hex>.tmp``."""
    from safetensors.torch import save

    with atomic_path(path) as tmp:
        tmp.write_bytes(save(tensors, metadata=metadata))
    return Path(path)


def list_checkpoints(ckpt_dir: Path, phase: int) -> list[Path]:
    """``phase{P}_epoch*_step*.pt`` in ``ckpt_dir``, oldest (lowest step) first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = NAME.match(p.name)
        if m and int(m["phase"]) == phase:
            found.append((int(m["step"]), int(m["epoch"]), p))
    return [p for _, _, p in sorted(found)]


def save_checkpoint(ckpt_dir: Path, *, phase: int, epoch: int, step: int, state: dict, keep_last: int = 3,
                    metric: float | None = None, best: float | None = None, higher_is_better: bool = True,
                    data_root: str | Path | None = None) -> dict:
    """Write ``phase{P}_epoch{E}_step{S}.pt`` atomically; prune to the newest ``keep_last``; update best.

    ``state``: ``model`` (student state dict), ``optimizer``, ``scheduler``, ``config`` (plain dict) and any
    extra plain entries; ``step``/``epoch``/``phase``/``rng`` are filled here. ``metric`` (e.g. val mIoU or
    val loss) is compared with ``best`` (the best so far, None = none yet); when it improves, a copy is
    written to ``phase{P}_best.pt``. ``data_root`` goes into the metadata (default: ``config.data_root``).
    Returns ``{"path": Path, "best": float | None, "is_best": bool}``.
    """
    _check_student_only(state)
    if data_root is None:  # the run's config says it (a broken config is load_checkpoint's to report)
        config = state.get("config")
        data_root = config.get("data_root") if isinstance(config, dict) else None
        data_root = data_root if isinstance(data_root, (str, Path)) else None
    full = {**state, **checkpoint_metadata(KIND_STUDENT, data_root), "phase": int(phase), "epoch": int(epoch), "step": int(step),
            "rng": rng_state()}
    if metric is not None:
        full["metric"] = float(metric)
    path = Path(ckpt_dir) / checkpoint_name(phase, epoch, step)
    atomic_torch_save(full, path)
    is_best = metric is not None and (best is None or (metric > best if higher_is_better else metric < best))
    if is_best:
        with atomic_path(path.with_name(best_name(phase))) as tmp:
            shutil.copyfile(path, tmp)
        best = float(metric)
    if keep_last > 0:
        for old in list_checkpoints(ckpt_dir, phase)[:-keep_last]:
            old.unlink(missing_ok=True)
    return {"path": path, "best": best, "is_best": is_best}


# --- start of a run: what an interrupted one left -------------------------------------------------------------
def remove_stale_tmp(ckpt_dir: Path, phase: int | None) -> list[Path]:
    """Delete the temporary files a killed save of ``phase`` (None: the video run) left in ``ckpt_dir``; only
    names this module writes (:data:`TMP_NAME`), never anything else. Returns the files removed."""
    ckpt_dir, removed = Path(ckpt_dir), []
    for p in sorted(ckpt_dir.iterdir()) if ckpt_dir.is_dir() else []:
        m = TMP_NAME.match(p.name)
        if not m or (m["video"] is not None) != (phase is None) or (phase is not None and int(m["phase"]) != phase):
            continue
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def truncate_log(path: Path, step: int) -> int:
    """Cut a step CSV (header with a ``step`` column, one row per logged step) back to the rows with step <=
    ``step``; torn rows (a killed writer's) go too. Rewritten atomically; removed when no row is left (a fresh
    run writes a new header). A file without a ``step`` column is left alone. Returns the rows dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows or "step" not in rows[0]:
        return 0
    header, col = rows[0], rows[0].index("step")
    keep = [r for r in rows[1:] if len(r) == len(header) and r[col].isdigit() and int(r[col]) <= step]
    dropped = len(rows) - 1 - len(keep)
    if not dropped:
        return 0
    if not keep:
        path.unlink()
        return dropped
    with atomic_path(path, fsync=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(keep)
    return dropped


def clean_interrupted(ckpt_dir: Path, phase: int | None, step: int, logs=()) -> None:
    """At the start of a run (``step``: the resumed step, 0 for a fresh run): remove the temporary checkpoint
    files a killed run left in ``ckpt_dir`` and cut the step CSVs ``logs`` back to rows <= ``step``, so no step
    is logged twice. Each file touched is named in a warning. Call it on rank 0 only."""
    for p in remove_stale_tmp(ckpt_dir, phase):
        warnings.warn(f"{p}: removed a temporary checkpoint file left by an interrupted save", stacklevel=2)
    for path in logs:
        dropped = truncate_log(path, step)
        if dropped:
            warnings.warn(f"{path}: dropped {dropped} row(s) after step {step} (an interrupted or earlier run); "
                          f"the log continues from step {step}", stacklevel=2)


# --- read -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A distillation checkpoint read once (``weights_only``, checked), with its metadata as fields. Stages take
    this object and pass it on; only a CLI turns a path into one (:meth:`open`).

        ck = Checkpoint.open("checkpoints/distillation/phase2_best.pt")
        ck.kind, ck.preset, ck.phase, ck.data_root, ck.config["teacher"], ck.sha256, ck.model  # state dict
    """

    path: Path
    """The file it was read from."""
    kind: str
    """:data:`KIND_STUDENT` (a Phase 1/2 image student) or :data:`KIND_TRACKER` (student + video memory)."""
    preset: str | None
    """The student preset (``preset``, else ``config.student_preset``; None when neither says)."""
    phase: int
    """1 or 2 (image distillation) or :data:`VIDEO_PHASE` (the video run)."""
    config: dict
    """The run's config (plain types; empty when the file has none)."""
    data_root: str | None
    """The SA-Co root it trained on (:func:`checkpoint_data_root`; None when it does not say)."""
    sha256: str
    """sha256 of the bytes that were loaded (64 hex digits)."""
    state: dict
    """Everything ``torch.load(weights_only=True)`` returned: ``model`` (name -> tensor), ``optimizer``, ``step``..."""

    @classmethod
    def open(cls, source: "Checkpoint | str | Path", map_location="cpu") -> "Checkpoint":
        """Read ``source`` once; an already opened :class:`Checkpoint` is returned as it is. A missing, truncated,
        corrupt or foreign file, or a wrongly typed entry, is a one-line :class:`DataFormatError` naming the file
        (and the key)."""
        if isinstance(source, Checkpoint):
            return source
        path = Path(source)
        state, digest = _read(path, map_location)
        config = state.get("config") or {}
        preset = state.get("preset") or config.get("student_preset")
        return cls(path=path, kind=checkpoint_kind(state), preset=preset if isinstance(preset, str) else None,
                   phase=state["phase"], config=config, data_root=checkpoint_data_root(state, path), sha256=digest,
                   state=state)

    @property
    def model(self) -> dict:
        """The model's state dict (name -> tensor)."""
        return self.state["model"]

    @property
    def step(self) -> int:
        return self.state["step"]

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    @property
    def provenance(self) -> str:
        """One line for records: the file, its hash and what it holds."""
        return (f"{self.path} (sha256 {self.sha256[:12]}, {self.kind} {self.preset or '?'}, phase {self.phase} "
                f"epoch {self.epoch} step {self.step})")

    def __str__(self) -> str:  # where a path was printed, the path still is
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)


def _read(path: Path, map_location) -> tuple[dict, str]:
    """(checked state, sha256 of its bytes) from one read of ``path``."""
    if not path.is_file():
        raise DataFormatError(f"{path}: checkpoint not found")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors of a truncated or corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataFormatError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(state, dict):
        raise DataFormatError(f"{path}: not a distillation checkpoint (top level is {type(state).__name__})")
    for key in REQUIRED_KEYS:
        if key not in state:
            raise DataFormatError(f"{path}: {key}: missing key (not a distillation checkpoint)")
    _check_types(path, state)
    return state, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: "Checkpoint | str | Path", map_location="cpu") -> dict:
    """The state dict of :meth:`Checkpoint.open` (``torch.load(path, weights_only=True)``, checked); a truncated,
    corrupt or foreign file -> one-line :class:`DataFormatError` naming the file."""
    return Checkpoint.open(path, map_location).state


# key -> the type its value must have where present (what the loaders read; bool is not an int here)
STATE_TYPES = {"model": dict, "step": int, "epoch": int, "phase": int, "config": dict, "preset": str,
               "num_latents": int, "format_version": int, "kind": str, "data_root": str}


def _check_types(path: Path, state: dict) -> None:
    """One-line error naming the key when a checkpoint entry has the wrong type (e.g. ``config`` a string)."""
    for key, kind in STATE_TYPES.items():
        value = state.get(key)
        if key in state and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise DataFormatError(f"{path}: {key}: expected {kind.__name__}, got {type(value).__name__}")
    if state.get("kind", KIND_STUDENT) not in KINDS:
        raise DataFormatError(f"{path}: kind: expected one of {', '.join(KINDS)}, got {state['kind']!r}")
    if state.get("format_version", 1) > FORMAT_VERSION:
        raise DataFormatError(f"{path}: format_version: {state['format_version']} is newer than this sam3m4 reads "
                              f"({FORMAT_VERSION})")
    for name, value in state["model"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise DataFormatError(f"{path}: model.{name}: expected a tensor, got {type(value).__name__}")


def load_model_state(model: torch.nn.Module, state: dict, where, *, field: str = "model", note: str = "",
                     assign: bool = False) -> None:
    """``model.load_state_dict(state)`` after checking that keys and shapes match; a mismatch is one
    :class:`DataFormatError` naming the file (``where``), the key and the expected and found shape (torch's own
    error puts those on later lines). ``note`` says what the model was built as (``"preset 'tiny'"``)."""
    expected = model.state_dict()
    about = f" ({note})" if note else ""
    missing = [k for k in expected if k not in state]
    if missing:
        raise DataFormatError(f"{where}: {field}.{missing[0]}: missing key ({len(missing)} missing){about}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise DataFormatError(f"{where}: {field}.{unexpected[0]}: unexpected key ({len(unexpected)} unexpected)"
                              f"{about}")
    for key, value in state.items():
        want, found = tuple(expected[key].shape), tuple(getattr(value, "shape", ()))
        if want != found:
            raise DataFormatError(f"{where}: {field}.{key}: expected shape {want}, found {found}{about}")
    try:
        model.load_state_dict(state, assign=assign)
    except (RuntimeError, TypeError) as err:  # e.g. a dtype torch cannot copy
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()
        raise DataFormatError(f"{where}: {field}: cannot load{about} ({first[:160]})") from err


def list_video_checkpoints(ckpt_dir: Path) -> list[Path]:
    """``video_epoch*.pt`` in ``ckpt_dir``, oldest (lowest epoch) first."""
    ckpt_dir = Path(ckpt_dir)
    found = [(int(m["epoch"]), p) for p in (ckpt_dir.iterdir() if ckpt_dir.is_dir() else []) if (m := VIDEO_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(ckpt_dir: Path, phase: int | None, map_location="cpu") -> tuple[Path, dict] | tuple[None, None]:
    """The newest loadable checkpoint of ``phase`` (None: the video run's ``video_epoch*.pt``); unreadable
    newer files are skipped with a warning. Returns ``(None, None)`` when there is none at all.
    """
    paths = list_video_checkpoints(ckpt_dir) if phase is None else list_checkpoints(ckpt_dir, phase)
    for path in reversed(paths):
        try:
            return path, load_checkpoint(path, map_location)
        except DataFormatError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
    return None, None


def resolve_init(spec: str, ckpt_dir: Path, phase: int) -> Path | None:
    """``init_from`` config value -> a checkpoint path: ``""``/``none`` -> None, ``latest`` -> the newest
    loadable ``phase{P}`` checkpoint (``best`` -> ``phase{P}_best.pt``), anything else a path."""
    spec = (spec or "").strip()
    if spec.lower() in ("", "none", "null"):
        return None
    if spec in ("latest", "best"):
        if spec == "best" and (Path(ckpt_dir) / best_name(phase)).is_file():
            return Path(ckpt_dir) / best_name(phase)
        path, _ = load_latest(ckpt_dir, phase)
        if path is None:
            raise DataFormatError(f"{ckpt_dir}: no phase{phase} checkpoint to initialise from (init_from={spec}); "
                                  f"run phase{phase} first or pass init_from=''")
        return path
    return Path(spec)
