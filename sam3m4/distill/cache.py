"""Teacher-feature cache: run the teacher once over a dataset, store what distillation needs as fp16 safetensors.

Layout (``data/<dataset>/cached_features`` by default)::

    cached_features/<teacher_id>_<S>px/shard-u<unit>-<12 hex>.safetensors   # one per work unit of the pass
    cached_features/<teacher_id>_<S>px/index.json     # shard -> pair keys and image hashes
    cached_features/<teacher_id>_<S>px/.lock          # filelock: writers append shards one at a time

* ``teacher_id`` names the teacher's weights (folder name + sha256 of ``config.json`` and ``*.safetensors``),
  ``S`` is the teacher's input resolution: a different teacher or resolution is a different folder.
* text-dependent outputs are keyed per (image, phrase): ``pair.<image_hash>-<phrase_hash>.<field>``;
  text-independent FPN features per image: ``image.<image_hash>.fpn<level>``. ``image_hash`` is the sha256
  of the decoded pixels (shape + bytes), so a renamed or re-encoded-identically file hits the cache.
* ``cache_settings.json`` records what a folder stores (top-k, min score, FPN levels); a config asking for
  something else is an error instead of silently reading the wrong thing.
* Stored per pair (Q queries, m = mask side): ``query_logits`` (Q,),
  ``boxes_xyxy`` (Q, 4) in [0, 1], ``presence_logit`` (1,), ``semantic_logits`` (1, m, m), ``mask_logits``
  (K, m, m) and ``mask_index`` (K,) int64 (which queries those masks belong to, by descending score): K =
  the queries among the ``topk`` best whose score is >= ``min_score`` (masks dominate disk use: SAM 3's are
  288 x 288, 166 KB each in fp16), so a confidently absent concept stores none.
* A shard is written to a temporary name and ``os.replace``d under the lock after re-checking which keys
  other writers stored meanwhile, so a killed pass loses at most one unwritten shard and a rerun (or a
  second process) skips every key already stored. The sharded pass (:mod:`sam3m4.distill.cache_pass`) names
  each shard after its work unit and content (``shard-u<unit>-<12 hex>.safetensors``), so one process and N
  torchrun ranks write the same files.
* ``index.json``: which shard holds which pairs and images, written (atomically) by rank 0 at the end of a
  pass; readers take it instead of reading every shard's header, and still read the headers of shards it
  does not list (a pass killed before writing it).

    sam3m4 distill cache --config configs/distill_phase2.yaml      # train + val splits (also run by phase1/2)
    torchrun --nproc_per_node=4 -m sam3m4 distill cache --config configs/distill_phase2.yaml device=cuda
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from filelock import FileLock

from sam3m4.checkpoint import atomic_save_safetensors
from sam3m4.data.saco_image import SacoImageDataset
from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_json
from sam3m4.models.preprocess import resize_uint8, uint8_to_pixels
from sam3m4.models.tokenizer import get_tokenizer
from sam3m4.teacher.bootstrap_model import build_config
from sam3m4.teacher.sam3 import Sam3Teacher

INDEX_FILE = "index.json"
INDEX_FORMAT = "sam3m4-teacher-cache-index-v1"
PAIR_FIELDS = ("query_logits", "boxes_xyxy", "presence_logit", "semantic_logits", "mask_logits", "mask_index")


# --- keys -------------------------------------------------------------------------------------------------
def image_hash(image: np.ndarray) -> str:
    """16 hex digits of sha256 over the (H, W, 3) uint8 pixels and their shape."""
    h = hashlib.sha256(str(tuple(image.shape)).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:16]


def phrase_hash(phrase: str) -> str:
    return hashlib.sha256(phrase.strip().encode("utf-8")).hexdigest()[:12]


def pair_key(img_hash: str, phrase: str) -> str:
    """``<image_hash>-<phrase_hash>``: the cache key of one (image, noun phrase) pair."""
    return f"{img_hash}-{phrase_hash(phrase)}"


def teacher_id(source: str | Path) -> str:
    """``<name>-<12 hex>``: a teacher folder's name + sha256 of its ``config.json`` and weight files."""
    path = Path(source)
    h = hashlib.sha256()
    files = sorted(p for p in path.glob("*") if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    if not files:
        h.update(str(source).encode())
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                h.update(chunk)
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in path.name or str(source))
    return f"{name}-{h.hexdigest()[:12]}"


# --- compact teacher outputs ------------------------------------------------------------------------------
PAD_LOGIT = -20.0  # mask logit of a padding slot (probability ~2e-9)


def compact_outputs(out, topk: int, fpn_levels: Sequence[int], min_score: float = 0.0) -> tuple[list[dict], list[dict]]:
    """A teacher forward's outputs -> per-pair records and per-pair image-feature records (fp32, CPU).

    ``out``: :class:`~sam3m4.teacher.sam3.TeacherOutput` for B pairs. Keeps all Q query logits / boxes but
    only the masks of the (at most) ``topk`` best-scoring queries whose score (sigmoid(query) *
    sigmoid(presence)) is >= ``min_score``: K varies per pair (0 for a confidently absent concept).
    """
    scores = out.query_logits.float().sigmoid() * out.presence_logit.float().sigmoid()  # (B, Q)
    k = min(int(topk), scores.shape[1]) if topk else scores.shape[1]
    order = scores.argsort(dim=1, descending=True)[:, :k]  # (B, k)
    pairs, images = [], []
    for b in range(scores.shape[0]):
        idx = order[b][scores[b, order[b]] >= min_score]  # (K,) best first
        pairs.append({
            "query_logits": out.query_logits[b].float().cpu(),  # (Q,)
            "boxes_xyxy": out.boxes_xyxy[b].float().cpu(),  # (Q, 4)
            "presence_logit": out.presence_logit[b].float().reshape(1).cpu(),  # (1,)
            "semantic_logits": out.semantic_logits[b].float().cpu(),  # (1, m, m)
            "mask_logits": out.mask_logits[b, idx].float().cpu(),  # (K, m, m)
            "mask_index": idx.cpu().long(),  # (K,)
        })
        images.append({f"fpn{lv}": out.fpn_features[lv][b].float().cpu() for lv in fpn_levels})  # (C, h, w)
    return pairs, images


def collate_pairs(records: Sequence[dict], device="cpu") -> dict[str, torch.Tensor]:
    """Stack B pair records into batched fp32 tensors on ``device``; the per-pair masks are padded to the
    batch's largest K (>= 1): ``mask_logits`` (B, K, m, m) with ``PAD_LOGIT`` and ``mask_index`` (B, K) int64
    with -1 in padding slots."""
    out = {f: torch.stack([r[f] for r in records]).to(device=device, dtype=torch.float32)
           for f in ("query_logits", "boxes_xyxy", "presence_logit", "semantic_logits")}
    m = out["semantic_logits"].shape[-2:]
    k = max([1] + [r["mask_logits"].shape[0] for r in records])
    masks = torch.full((len(records), k, *m), PAD_LOGIT)  # (B, K, m, m)
    index = torch.full((len(records), k), -1, dtype=torch.long)  # (B, K)
    for b, r in enumerate(records):
        n = r["mask_logits"].shape[0]
        masks[b, :n] = r["mask_logits"].float()
        index[b, :n] = r["mask_index"]
    out["mask_logits"], out["mask_index"] = masks.to(device), index.to(device)
    return out


def collate_images(records: Sequence[dict], device="cpu") -> list[torch.Tensor]:
    """Stack B image records -> list over levels of (B, C, h, w) fp32."""
    names = sorted(records[0], key=lambda n: int(n[3:]))
    return [torch.stack([r[n] for r in records]).to(device=device, dtype=torch.float32) for n in names]


# --- the store --------------------------------------------------------------------------------------------
class FeatureCache:
    """fp16 safetensors shards of one teacher at one resolution under ``root/<teacher_id>_<S>px``."""

    def __init__(self, root: str | Path, teacher_key: str, resolution: int, settings: dict | None = None):
        self.dir = Path(root) / f"{teacher_key}_{int(resolution)}px"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.dir / ".lock"))
        if settings is not None:
            self._check_settings(settings)
        self._where: dict[str, Path] = {}  # tensor-name prefix ("pair.<key>" / "image.<key>") -> shard
        self._seen: set[str] = set()
        self._handles: dict[Path, object] = {}
        self._index_stamp: int | None = None  # mtime of the index.json last read
        self.refresh()

    def _check_settings(self, settings: dict) -> None:
        """What is stored (top-k, min score, FPN levels) is fixed per folder: recorded once, then compared."""
        import json

        path = self.dir / "cache_settings.json"
        want = json.loads(json.dumps(settings))
        with self.lock:
            if not path.is_file():
                atomic_write_json(path, want, indent=1, sort_keys=True)
                return
        have = json.loads(path.read_text())
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            k = diff[0]
            raise DataFormatError(f"{path}: {k}: cache holds {have.get(k)!r}, config asks {want.get(k)!r}; "
                                  "use another cache_dir or delete this folder")

    def refresh(self) -> None:
        """Learn the shards written since the last call: from ``index.json`` where it lists them, else from the
        shard's header (tensor names only)."""
        from safetensors import safe_open

        self._read_index()
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            if shard.name in self._seen:
                continue
            try:
                with safe_open(str(shard), framework="pt") as f:
                    names = list(f.keys())
            except Exception as exc:
                raise DataFormatError(f"{shard}: unreadable cache shard ({str(exc).splitlines()[0][:120]}); "
                                      "delete it and rerun the cache pass") from exc
            for name in names:
                self._where[name.rsplit(".", 1)[0]] = shard
            self._seen.add(shard.name)

    def _read_index(self) -> None:
        import json

        path = self.dir / INDEX_FILE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._index_stamp:
            return
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            if index.get("format") != INDEX_FORMAT:
                raise ValueError(f"format is {index.get('format')!r}, expected {INDEX_FORMAT!r}")
            shards = {name: (list(e["pairs"]), list(e["images"])) for name, e in index["shards"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataFormatError(f"{path}: shards: unreadable cache index ({str(exc).splitlines()[0][:100]}); "
                                  "delete it (the next cache pass rebuilds it from the shards)") from exc
        for name, (pairs, images) in shards.items():
            if name not in self._seen and (self.dir / name).is_file():  # a pruned shard is not trusted
                self.register(name, pairs, images)
        self._index_stamp = stamp

    def register(self, shard_name: str, pairs: Iterable[str], images: Iterable[str]) -> None:
        """Record that shard ``shard_name`` of this folder holds these pair keys and image hashes (what another
        rank wrote, without reading the file: on a shared file system it may not be listed here yet). A key
        already known keeps its shard."""
        path = self.dir / shard_name
        for key in pairs:
            self._where.setdefault(f"pair.{key}", path)
        for key in images:
            self._where.setdefault(f"image.{key}", path)
        self._seen.add(shard_name)

    def index_entries(self) -> dict[str, dict[str, list[str]]]:
        """``{shard name: {"pairs": [keys], "images": [hashes]}}``, sorted: the content of ``index.json``."""
        out: dict[str, dict[str, list[str]]] = {}
        for prefix, shard in self._where.items():
            kind, key = prefix.split(".", 1)
            out.setdefault(shard.name, {"pairs": [], "images": []})["pairs" if kind == "pair" else "images"].append(key)
        return {name: {k: sorted(v) for k, v in e.items()} for name, e in sorted(out.items())}

    def write_index(self) -> Path:
        """Write ``index.json`` (atomic; rank 0 only, after every rank's shards are registered or listed)."""
        path = self.dir / INDEX_FILE
        atomic_write_json(path, {"format": INDEX_FORMAT, "shards": self.index_entries()}, indent=0, sort_keys=True,
                          newline=True)
        self._index_stamp = path.stat().st_mtime_ns
        return path

    def has_pair(self, key: str) -> bool:
        return f"pair.{key}" in self._where

    def has_image(self, img_hash: str) -> bool:
        return f"image.{img_hash}" in self._where

    def __len__(self) -> int:
        return sum(1 for k in self._where if k.startswith("pair."))

    def _read(self, prefix: str, fields: Iterable[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        shard = self._where.get(prefix)
        if shard is None:
            raise DataFormatError(f"{self.dir}: {prefix}: not in the cache (run the cache pass first)")
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(str(shard), framework="pt")
        return {f: handle.get_tensor(f"{prefix}.{f}") for f in fields}

    def get_pair(self, key: str) -> dict[str, torch.Tensor]:
        """One pair's record (fp16 tensors, ``mask_index`` int64); see the module docstring for shapes."""
        return self._read(f"pair.{key}", PAIR_FIELDS)

    def get_image(self, img_hash: str, levels: Sequence[int]) -> dict[str, torch.Tensor]:
        """``{"fpn<l>": (C, h, w) fp16}`` for each requested FPN level."""
        return self._read(f"image.{img_hash}", [f"fpn{lv}" for lv in levels])

    def write_shard(self, pairs: dict[str, dict], images: dict[str, dict], rank: int = 0,
                    name: str | None = None) -> int:
        """Store new records as one shard (fp16, atomic, under the lock); returns how many pairs were new.

        ``name``: the shard's file name (:mod:`sam3m4.distill.cache_pass` gives one per work unit); by default
        ``shard-<rank>-<random>.safetensors``."""
        with self.lock:
            self.refresh()
            tensors = {}
            for key, rec in pairs.items():
                if not self.has_pair(key):
                    for f, t in rec.items():
                        tensors[f"pair.{key}.{f}"] = t if f == "mask_index" else t.to(torch.float16)
            for key, rec in images.items():
                if not self.has_image(key):
                    for f, t in rec.items():
                        tensors[f"image.{key}.{f}"] = t.to(torch.float16)
            if not tensors:
                return 0
            tensors = {k: v.contiguous() for k, v in tensors.items()}
            final = self.dir / (name or f"shard-{rank:03d}-{uuid.uuid4().hex[:12]}.safetensors")
            atomic_save_safetensors(tensors, final, metadata={"format": "sam3m4-teacher-cache-v1"})
            self.refresh()
        return sum(1 for k in tensors if k.startswith("pair.") and k.endswith(".query_logits"))


# --- the data the cache and the training read -------------------------------------------------------------
class PairSet:
    """A SA-Co image split held in memory for distillation.

    * ``images``: the I unique originals, (H, W, 3) uint8 RGB; ``image_hashes``: their content keys;
      ``pixels``: (I, S, S, 3) uint8, resized (bilinear) to the student's input side S.
    * per pair p (P pairs): ``image_of`` (P,) int64, ``phrases[p]``, ``keys[p]`` (cache key), ``phrase_of`` (P,)
      into ``vocab`` whose CLIP tokens are ``input_ids`` / ``attention_mask`` (V, 32); ``present`` (P,) bool;
      ``masks[p]`` (N, m, m) float16 ground truth area-downsampled to the student's mask side m;
      ``boxes[p]`` (N, 4) XYXY in [0, 1]; ``gt_full[p]`` (N, H, W) bool when ``keep_full_gt``.
    """

    def __init__(self, json_path: str | Path, size: int, mask_size: int, keep_full_gt: bool = False,
                 limit: int | None = None, progress: bool = False):
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        ds = SacoImageDataset(json_path)
        n = len(ds) if not limit else min(int(limit), len(ds))
        self.json_path = Path(json_path)
        self.images, self.image_hashes, resized = [], [], []
        self.image_of, self.phrases, self.keys, self.present = [], [], [], []
        self.masks, self.boxes, self.gt_full, self.sizes = [], [], [], []
        index: dict[str, int] = {}
        for i in tqdm(range(n), desc=f"load {self.json_path.name}", unit="pair", disable=None if progress else True,
                      leave=False):
            s = ds[i]
            if s.file_name not in index:
                index[s.file_name] = len(self.images)
                self.images.append(s.image)
                self.image_hashes.append(image_hash(s.image))
                resized.append(torch.from_numpy(np.array(resize_uint8(s.image, size))))
            u = index[s.file_name]
            h, w = s.image.shape[:2]
            self.image_of.append(u)
            self.phrases.append(s.phrase)
            self.keys.append(pair_key(self.image_hashes[u], s.phrase))
            self.present.append(bool(s.present))
            m = torch.from_numpy(s.masks).float()  # (N, H, W)
            m = F.interpolate(m[None], size=(mask_size, mask_size), mode="area")[0] if len(m) else \
                torch.zeros(0, mask_size, mask_size)
            self.masks.append(m.half())  # (N, m, m)
            self.boxes.append(torch.from_numpy(s.boxes).float().reshape(-1, 4) / torch.tensor([w, h, w, h]))
            self.gt_full.append(s.masks if keep_full_gt else None)
            self.sizes.append((h, w))
        self.pixels = torch.stack(resized) if resized else torch.zeros(0, size, size, 3, dtype=torch.uint8)
        self.image_of = torch.tensor(self.image_of, dtype=torch.long)
        self.present = torch.tensor(self.present, dtype=torch.bool)
        self.vocab = sorted(set(self.phrases))
        pos = {p: i for i, p in enumerate(self.vocab)}
        self.phrase_of = torch.tensor([pos[p] for p in self.phrases], dtype=torch.long)
        tok = get_tokenizer(32)(self.vocab) if self.vocab else {"input_ids": torch.zeros(0, 32, dtype=torch.long),
                                                                 "attention_mask": torch.zeros(0, 32, dtype=torch.long)}
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]  # (V, 32) each

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def image_pixels(self, img_idx, device="cpu") -> torch.Tensor:
        """(B, 3, S, S) float32 in [-1, 1] (mean = std = 0.5, SAM 3's format) for unique-image indices."""
        return uint8_to_pixels(self.pixels[torch.as_tensor(img_idx, dtype=torch.long)].to(device))

    def student_inputs(self, idx, device="cpu") -> dict[str, torch.Tensor]:
        """``pixel_values`` (B, 3, S, S), ``input_ids`` / ``attention_mask`` (B, 32) for pair indices."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        t = self.phrase_of[idx]
        return {"pixel_values": self.image_pixels(self.image_of[idx], device),
                "input_ids": self.input_ids[t].to(device), "attention_mask": self.attention_mask[t].to(device)}

    def gt_targets(self, idx, device="cpu") -> list[dict]:
        """Ground truth for :func:`set_prediction_loss`: ``masks`` (N, m, m) float, ``boxes_xyxy`` (N, 4)."""
        return [{"masks": self.masks[p].float().to(device), "boxes_xyxy": self.boxes[p].to(device)}
                for p in torch.as_tensor(idx).tolist()]


# --- running the teacher ----------------------------------------------------------------------------------
def _take(value, index: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, (tuple, list)):
        return type(value)(_take(v, index) for v in value)
    return value


@torch.no_grad()
def run_teacher(teacher, images: Sequence[np.ndarray], image_of: Sequence[int] | None = None,
                phrases: Sequence[str] | None = None, topk: int = 16, fpn_levels: Sequence[int] = (1, 2),
                min_score: float = 0.0, timings: dict | None = None) -> tuple[list[dict] | None, list[dict]]:
    """Teacher outputs with the vision tower run once per unique image and the text tower once per phrase.

    ``images``: U unique (H, W, 3) uint8; ``image_of`` (B,) and ``phrases`` (B,) describe B pairs (None: image
    features only). Returns (B pair records or None, U image records), fp32 CPU, see :func:`compact_outputs`.
    Numerically the same as ``Sam3Teacher.forward`` on the expanded batch (``Sam3Model`` accepts precomputed
    ``vision_embeds`` / ``text_embeds``). ``timings`` (when given) accumulates ``vision_s`` / ``images`` (the
    image encoder) and ``heads_s`` / ``pairs`` (text encoder, DETR, mask decoder), seconds of wall time.
    """
    import time
    from types import SimpleNamespace

    m = teacher.model
    device = next(m.parameters()).device
    t0 = time.perf_counter()
    px = teacher.preprocess_images(list(images)).to(device)  # (U, 3, S, S)
    vision = m.get_vision_features(pixel_values=px)
    feats = [{f"fpn{lv}": vision.fpn_hidden_states[lv][u].float().cpu() for lv in fpn_levels}
             for u in range(len(images))]
    t1 = time.perf_counter()
    if timings is not None:
        timings["vision_s"] = timings.get("vision_s", 0.0) + t1 - t0
        timings["images"] = timings.get("images", 0) + len(images)
    if phrases is None:
        return None, feats
    vocab = sorted(set(phrases))
    tok = {k: v.to(device) for k, v in teacher.tokenize(vocab).items()}
    text = m.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    t_of = torch.tensor([vocab.index(p) for p in phrases], device=device)  # (B,)
    i_of = torch.as_tensor(list(image_of), device=device)  # (B,)
    vision_b = type(vision)(**{k: _take(v, i_of) for k, v in vision.items()})
    out = m(vision_embeds=vision_b, text_embeds=SimpleNamespace(pooler_output=text.pooler_output[t_of]),
            attention_mask=tok["attention_mask"][t_of])
    ns = SimpleNamespace(query_logits=out.pred_logits, boxes_xyxy=out.pred_boxes, presence_logit=out.presence_logits,
                         semantic_logits=out.semantic_seg, mask_logits=out.pred_masks, fpn_features=())
    pairs, _ = compact_outputs(ns, topk, (), min_score)
    if timings is not None:
        timings["heads_s"] = timings.get("heads_s", 0.0) + time.perf_counter() - t1
        timings["pairs"] = timings.get("pairs", 0) + len(phrases)
    return pairs, feats


def save_random_teacher(out_dir: str | Path, seed: int = 0, **sizes) -> Path:
    """Save a randomly initialised tiny SAM 3 (``sam3m4.teacher.bootstrap_model.build_config(**sizes)``) with
    ``save_pretrained``: a stand-in teacher for tests and pipeline bring-up (its outputs are noise)."""
    from transformers import Sam3Model

    torch.manual_seed(seed)
    teacher = Sam3Teacher(Sam3Model(build_config(**sizes)).eval())
    teacher.model.save_pretrained(str(out_dir))
    teacher.image_processor.save_pretrained(str(out_dir))
    return Path(out_dir)


def teacher_resolution(source: str | Path) -> int:
    """The teacher's input side from its ``config.json`` (no weights loaded): a ``Sam3Model`` folder, or a
    ``Sam3VideoModel`` one such as ``facebook/sam3`` (the detector's config under ``detector_config``)."""
    import json

    path = Path(source) / "config.json"
    try:
        cfg = json.loads(path.read_text())
        cfg = cfg.get("detector_config") or cfg
        return int(cfg["vision_config"]["backbone_config"]["image_size"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: vision_config.backbone_config.image_size: cannot read "
                              f"({type(exc).__name__})") from exc
