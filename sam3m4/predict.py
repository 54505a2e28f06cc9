"""Use a trained student: image + noun phrase -> instance masks, scores, presence.

    from sam3m4.predict import Predictor
    predictor = Predictor.from_checkpoint("checkpoints/distillation/phase2_best.pt")
    pred = predictor.predict(image, "red circle")        # image: (H, W, 3) uint8 RGB, any size
    pred.masks  # (N, H, W) bool    pred.scores  # (N,)    pred.presence  # float in [0, 1]

    sam3m4 predict --ckpt checkpoints/distillation/phase2_best.pt --image photo.jpg --prompt "red circle" --out out/

A phrase's prompt embedding is computed once and cached (as a phone app does); every later image with the
same phrase only runs the image encoder and the decoder. Detections are kept with SAM 3's rule: score =
sigmoid(query logit) * sigmoid(presence logit) >= threshold (0.5).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam3m4.checkpoint import Checkpoint, load_model_state
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.fileio import atomic_path, atomic_write_json
from sam3m4.flags import ranged
from sam3m4.models import build_student
from sam3m4.models.build import PRESETS
from sam3m4.models.preprocess import to_pixels
from sam3m4.models.tokenizer import get_tokenizer
from sam3m4.models.video import StudentTracker


@dataclass
class Prediction:
    """Kept detections of one (image, phrase) pair at the image's resolution (H, W)."""

    masks: np.ndarray
    """(N, H, W) bool."""
    scores: np.ndarray
    """(N,) float32 in [threshold, 1]."""
    boxes: np.ndarray
    """(N, 4) float32 XYXY pixels."""
    presence: float
    """sigmoid(presence logit) in [0, 1]: the model's belief that the phrase is in the image."""
    all_scores: np.ndarray
    """(Q,) float32: every query's score."""


class Predictor:
    """Wraps a :class:`~sam3m4.models.student.Student` (eval mode) with preprocessing and a prompt cache."""

    def __init__(self, model, threshold: float = 0.5, device: str = "cpu"):
        import torch

        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.threshold = threshold
        self.tokenizer = get_tokenizer(32)
        self._prompts: dict[str, object] = {}

    @classmethod
    def from_checkpoint(cls, path: Checkpoint | str | Path, threshold: float = 0.5,
                        device: str = "cpu") -> "Predictor":
        """The student of a distillation checkpoint (an opened :class:`~sam3m4.checkpoint.Checkpoint`, or a path
        read once, weights_only; the student preset is stored in it)."""
        return cls(load_student(path), threshold=threshold, device=device)

    def prompt(self, phrase: str):
        """The cached prompt embedding of ``phrase`` (computed on first use)."""
        import torch

        key = phrase.strip()
        if not key:
            raise ConfigError("prompt: empty noun phrase")
        if key not in self._prompts:
            tok = self.tokenizer([key])
            with torch.no_grad():
                self._prompts[key] = self.model.encode_text(tok["input_ids"].to(self.device),
                                                            tok["attention_mask"].to(self.device))
        return self._prompts[key]

    def predict(self, image: np.ndarray, phrase: str) -> Prediction:
        """One (H, W, 3) uint8 RGB image and a noun phrase -> :class:`Prediction`."""
        import torch
        import torch.nn.functional as F

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        px = to_pixels([image], self.model.image_size).to(self.device)  # (1, 3, S, S)
        with torch.no_grad():
            out = self.model.decode(self.model.encode_image(px), self.prompt(phrase))
        scores = out.scores[0].float().cpu()  # (Q,)
        keep = torch.nonzero(scores >= self.threshold).flatten()
        logits = out.mask_logits[0, keep].float()  # (N, m, m)
        if len(keep):
            logits = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        masks = (logits > 0).cpu().numpy().reshape(len(keep), h, w)
        boxes = out.boxes_xyxy[0, keep].float().cpu() * torch.tensor([w, h, w, h], dtype=torch.float32)
        return Prediction(masks=masks, scores=scores[keep].numpy().astype(np.float32),
                          boxes=boxes.numpy().astype(np.float32),
                          presence=float(out.presence_logit[0, 0].sigmoid()),
                          all_scores=scores.numpy().astype(np.float32))

    def __call__(self, sample) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation interface (:func:`sam3m4.eval.image.evaluate_pairs`): sample -> (masks, scores)."""
        pred = self.predict(sample.image, sample.phrase)
        return pred.masks, pred.scores

    def predict_pair(self, sample) -> tuple[np.ndarray, np.ndarray, float]:
        """As ``__call__``, plus the pair's presence score: the highest score over all queries, kept or not (what
        presence calibration needs below the keep threshold; :mod:`sam3m4.eval.image`)."""
        pred = self.predict(sample.image, sample.phrase)
        return pred.masks, pred.scores, float(pred.all_scores.max()) if pred.all_scores.size else 0.0


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 with each instance tinted in its own colour and outlined."""
    palette = np.array([[255, 64, 64], [64, 200, 255], [255, 200, 0], [160, 90, 255], [0, 220, 120],
                        [255, 120, 200]], dtype=np.float32)
    out = image.astype(np.float32).copy()
    for i, m in enumerate(masks):
        colour = palette[i % len(palette)]
        out[m] = (1 - alpha) * out[m] + alpha * colour
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


# --- CLI: sam3m4 predict ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, type=Path, help="student checkpoint (.pt from sam3m4 distill)")
    parser.add_argument("--image", required=True, type=Path, nargs="+", help="image file(s) (JPEG, PNG, ...)")
    parser.add_argument("--prompt", required=True, help='noun phrase, e.g. "red circle"')
    parser.add_argument("--out", required=True, type=Path, help="output folder for masks and overlays")
    ranged(parser.add_argument("--threshold", type=float, default=0.5,
                               help="score threshold for kept detections"), 0, 1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run)


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` if torch can use it here (``cpu``, ``cuda[:N]``, ``mps``), else a one-line ConfigError."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"{flag} {device!r}: not a device; use cpu, cuda, cuda:N or mps") from None
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{flag} {device!r}: not a device; use cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available() or kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag} {device!r}: not available on this machine (use cpu)")
    return device


def check_threshold(value: float, flag: str = "--threshold") -> float:
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(f"{flag} {value}: must be in [0, 1] (a detection score)")
    return value


def read_image(path: Path, header_only: bool = False) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB of an image file; a missing, undecodable or decompression-bomb file (more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS``, the warning level included) is one line naming it. ``header_only``: only
    open it (size and format, no pixels), return None: the check run on every input before the model loads."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataFormatError(f"{path}: no such image file" + (" (a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return None if header_only else np.asarray(im.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataFormatError(f"{path}: too many pixels to decode safely (more than {Image.MAX_IMAGE_PIXELS}: "
                              "a decompression bomb, or an image far larger than a camera's)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataFormatError(f"{path}: not an image PIL can decode ({first[:160]})") from None


def output_stems(paths: list[Path]) -> list[str]:
    """The output name stem of each input (``<stem>_overlay.png``, ``<stem>.json``, ...). Two inputs with the same
    stem (``a/x.jpg`` and ``b/x.png``) would overwrite each other's outputs: refused with one line naming both."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise ConfigError(f"--image {path}: same file name stem '{path.stem}' as {seen[path.stem]}; their outputs "
                              "would overwrite each other (rename one, or run them with different --out folders)")
        seen[path.stem] = path
    return list(seen)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    check_threshold(args.threshold)
    check_device(args.device)
    if not args.prompt.strip():
        raise ConfigError("--prompt: empty; give a noun phrase, e.g. --prompt \"red circle\"")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    for path in args.image:  # every file before the model loads: a typo fails in a second, not after the load
        if not path.is_file():
            raise ConfigError(f"--image {path}: no such file" + (" (a folder)" if path.is_dir() else ""))
        read_image(path, header_only=True)  # not an image, or a decompression bomb: refused before any output
    output_stems(args.image)
    predictor = Predictor.from_checkpoint(args.ckpt, threshold=args.threshold, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.image:
        image = read_image(path)
        pred = predictor.predict(image, args.prompt)
        stem = path.stem
        for i, m in enumerate(pred.masks):
            with atomic_path(args.out / f"{stem}_mask{i:02d}.png") as tmp:
                Image.fromarray((m * 255).astype(np.uint8)).save(tmp, format="PNG")
        with atomic_path(args.out / f"{stem}_overlay.png") as tmp:
            Image.fromarray(overlay(image, pred.masks)).save(tmp, format="PNG")
        summary = {"image": str(path), "prompt": args.prompt, "presence": round(pred.presence, 4),
                   "instances": len(pred.masks), "scores": [round(float(s), 4) for s in pred.scores],
                   "boxes_xyxy": [[round(float(v), 1) for v in b] for b in pred.boxes]}
        atomic_write_json(args.out / f"{stem}.json", summary, indent=2)
        print(f"{path}: {len(pred.masks)} instance(s) of '{args.prompt}', presence {pred.presence:.3f} -> "
              f"{args.out / (stem + '_overlay.png')}")
    return 0


class VideoPredictor:
    """Streams a :class:`~sam3m4.models.video.StudentTracker` over a video for one noun phrase.

    Query q's masks over time are one masklet (the tracker carries each query from frame to frame); a
    query contributes where its score is >= ``threshold`` and masklets of queries never kept are dropped.
    ``predictor(sample) -> (M, T, H, W) bool`` is the interface of :func:`sam3m4.eval.video.evaluate_videos`.
    """

    def __init__(self, tracker, threshold: float = 0.5, device: str = "cpu"):
        import torch

        self.tracker = tracker.eval().to(device)
        self.images = Predictor(tracker.student, threshold=threshold, device=device)  # prompt cache
        self.device = torch.device(device)
        self.threshold = threshold

    def masklets(self, frames: np.ndarray, phrase: str) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames + a phrase -> (M, T, H, W) bool masklets."""
        return self.scored_masklets(frames, phrase)[0]

    def scored_masklets(self, frames: np.ndarray, phrase: str) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`masklets`, plus (M, T) float32 per-frame scores (0 where the query is not kept)."""
        import torch
        import torch.nn.functional as F

        t_len, h, w = frames.shape[:3]
        prompt = self.images.prompt(phrase)
        state = self.tracker.init_state(1).to(self.device)
        kept, masks, kept_scores = [], [], []
        with torch.no_grad():
            for frame in frames:
                px = to_pixels([frame], self.tracker.student.image_size).to(self.device)  # (1, 3, S, S)
                logits, scores, state = self.tracker.track(px, prompt.tokens, prompt.mask, state)
                keep = scores[0] >= self.threshold  # (Q,)
                up = F.interpolate(logits[0][None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
                masks.append(((up > 0) & keep[:, None, None]).cpu().numpy())  # (Q, H, W)
                kept.append(keep.cpu().numpy())
                kept_scores.append((scores[0].float() * keep).cpu().numpy())  # (Q,)
        masks = np.stack(masks, axis=1)  # (Q, T, H, W)
        rows = np.stack(kept, axis=1).any(axis=1)  # (Q,) queries kept in some frame
        return masks[rows], np.stack(kept_scores, axis=1)[rows].astype(np.float32)

    def __call__(self, sample) -> np.ndarray:
        return self.masklets(sample.frames, sample.phrase)


def load_student(path: Checkpoint | str | Path):
    """The :class:`~sam3m4.models.student.Student` of a Phase 1/2 checkpoint (a :class:`~sam3m4.checkpoint.Checkpoint`
    or a path read once, weights_only), in eval mode on the CPU; a missing or unknown preset or a weight that does
    not fit is a one-line :class:`DataFormatError` naming the file and the field."""
    ck = Checkpoint.open(path)  # checks the types of model / config / preset
    preset = ck.state.get("preset") or ck.config.get("student_preset")
    if not preset:
        raise DataFormatError(f"{ck.path}: preset: missing (not a sam3m4 student checkpoint)")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise DataFormatError(f"{ck.path}: preset: unknown student preset {preset!r}; choices: {', '.join(PRESETS)}")
    model = build_student(preset)
    load_model_state(model, ck.model, ck.path, note=f"preset '{preset}'")
    return model.eval()


def load_tracker(path: Checkpoint | str | Path):
    """A :class:`~sam3m4.models.video.StudentTracker` from ``video_epoch*.pt`` (a :class:`~sam3m4.checkpoint.Checkpoint`
    or a path read once, weights_only)."""
    ck = Checkpoint.open(path)
    if "preset" not in ck.state:
        raise DataFormatError(f"{ck.path}: preset: missing (not a sam3m4 video checkpoint)")
    tracker = StudentTracker(build_student(ck.preset), num_latents=ck.state.get("num_latents", 8))
    load_model_state(tracker, ck.model, ck.path, note=f"preset '{ck.preset}'")
    return tracker.eval()
