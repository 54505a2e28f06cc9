"""The bootstrap's data: an SA-Co image split held in memory as model inputs and loss targets.

    train = PairTensors.from_json(saco_dir(Path("data/synth")) / "train.json", teacher, mask_size=48, keep_full=False)
    inputs, targets = train.batch(torch.arange(8))

Images are preprocessed once by the teacher's own image processor; masks are kept at the model's mask
resolution (area-downsampled), plus at full resolution for the val split's metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4.data.saco_image import SacoImageDataset
from sam3m4.errors import Sam3m4Error


class PairTensors:
    """A split held in memory: unique images preprocessed once, per-pair targets at mask resolution.

    ``pixels`` (I, 3, S, S) float32 in [-1, 1]; ``image_of`` (P,) int64 index into pixels; ``phrase_of`` (P,)
    into ``phrases``; ``masks[p]`` (N, m, m) float in [0, 1] (area-downsampled); ``boxes[p]`` (N, 4) XYXY in
    [0, 1]; ``present`` (P,) bool; ``gt_full[p]`` (N, H, W) bool at image resolution (val only).
    """

    def __init__(self, samples, teacher, mask_size: int, keep_full: bool):
        """``samples``: iterable of :class:`sam3m4.data.saco_image.ImageSample`-like objects (``file_name``,
        ``image`` (H, W, 3) uint8, ``phrase``, ``masks`` (N, H, W) bool, ``boxes`` (N, 4) XYXY px, ``present``)."""
        index: dict[str, int] = {}
        images, image_of, phrase_list, masks, boxes, present, full, sizes = [], [], [], [], [], [], [], []
        for s in samples:
            if s.file_name not in index:
                index[s.file_name] = len(images)
                images.append(np.ascontiguousarray(s.image))
            h, w = s.image.shape[:2]
            image_of.append(index[s.file_name])
            phrase_list.append(s.phrase)
            m = torch.from_numpy(np.asarray(s.masks, dtype=np.float32))  # (N, H, W)
            if len(m):
                m = F.interpolate(m[None], size=(mask_size, mask_size), mode="area")[0]  # (N, m, m)
            else:
                m = torch.zeros(0, mask_size, mask_size)
            masks.append(m)
            boxes.append(torch.from_numpy(np.asarray(s.boxes, np.float32)).reshape(-1, 4) / torch.tensor([w, h, w, h]))
            present.append(bool(s.present))
            sizes.append((h, w))
            full.append(np.asarray(s.masks, bool) if keep_full else None)
        self.phrases = sorted(set(phrase_list))
        tok = teacher.tokenize(self.phrases)
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]  # (T, 32) each
        self.pixels = torch.cat([teacher.preprocess_images(images[i : i + 64]) for i in range(0, len(images), 64)])
        self.image_of = torch.tensor(image_of)
        self.phrase_of = torch.tensor([self.phrases.index(p) for p in phrase_list])
        self.masks, self.boxes, self.gt_full, self.sizes = masks, boxes, full, sizes
        self.present = torch.tensor(present)
        # per image, every phrase's union mask (phrases not asked as positives are absent): (I, T, m, m)
        self.phrase_maps = torch.zeros(len(images), len(self.phrases), mask_size, mask_size, dtype=torch.float16)
        for p in range(len(masks)):
            if present[p] and len(masks[p]):
                self.phrase_maps[image_of[p], self.phrase_of[p]] = masks[p].amax(0).half()

    def add_absent_pairs(self) -> int:
        """Add an (image, phrase) pair with no instance for every phrase of :attr:`phrases` not present on an
        image and not already asked there (``phrase_maps`` empty: every present concept is asked in SA-Co).
        Returns how many were added. Lets a sampler choose negatives by phrase, not only the asked ones."""
        asked = set(zip(self.image_of.tolist(), self.phrase_of.tolist()))
        m = self.masks[0].shape[-1] if self.masks else self.phrase_maps.shape[-1]
        present = self.phrase_maps.flatten(2).amax(-1) > 0  # (I, T)
        size_of = {i: self.sizes[p] for p, i in enumerate(self.image_of.tolist())}
        new_img, new_phrase = [], []
        for i in range(len(self.pixels)):
            for t in range(len(self.phrases)):
                if not present[i, t] and (i, t) not in asked:
                    new_img.append(i)
                    new_phrase.append(t)
                    self.masks.append(torch.zeros(0, m, m))
                    self.boxes.append(torch.zeros(0, 4))
                    self.sizes.append(size_of[i])
                    self.gt_full.append(np.zeros((0, *size_of[i]), bool) if self.gt_full and self.gt_full[0] is not None else None)
        self.image_of = torch.cat([self.image_of, torch.tensor(new_img, dtype=torch.long)])
        self.phrase_of = torch.cat([self.phrase_of, torch.tensor(new_phrase, dtype=torch.long)])
        self.present = torch.cat([self.present, torch.zeros(len(new_img), dtype=torch.bool)])
        return len(new_img)

    def balanced_cells(self) -> list[list[torch.Tensor]]:
        """Per image, its pair indices in 4 cells: (shape-only phrase, colour + shape phrase) x (absent, present),
        ordered ``[single absent, single present, compound absent, compound present]`` (each (n,) int64)."""
        single = torch.tensor([" " not in ph for ph in self.phrases])[self.phrase_of]  # (P,) one-word phrase
        out = []
        for pairs in self.pairs_of_image():
            out.append([pairs[(single[pairs] == s) & (self.present[pairs] == pr)] for s in (True, False)
                        for pr in (False, True)])
        return out

    def near_misses(self) -> list[torch.Tensor]:
        """Per pair, the (n,) int64 indices of the hard negatives of a present pair: the absent pairs of the same
        image whose phrase differs from its phrase in one word ("red circle" -> "blue circle" or "red star";
        "circle" -> "star"). Empty for an absent pair. Call :meth:`add_absent_pairs` first so that every absent
        (image, phrase) pair exists."""
        words = [ph.split(" ") for ph in self.phrases]

        def one_word_apart(a: int, b: int) -> bool:
            wa, wb = words[a], words[b]
            return len(wa) == len(wb) and sum(x != y for x, y in zip(wa, wb)) == 1

        near = [[b for b in range(len(words)) if one_word_apart(a, b)] for a in range(len(words))]
        out = []
        for pairs in self.pairs_of_image():
            absent = {int(self.phrase_of[q]): int(q) for q in pairs if not self.present[q]}
            for q in pairs.tolist():
                hits = [absent[b] for b in near[int(self.phrase_of[q])] if b in absent] if self.present[q] else []
                out.append((q, torch.tensor(hits, dtype=torch.long)))
        out.sort(key=lambda x: x[0])
        return [t for _, t in out]

    @classmethod
    def from_json(cls, json_path: Path, teacher, mask_size: int, keep_full: bool, limit: int | None = None):
        """Read an SA-Co image JSON (and its images) with :class:`sam3m4.data.saco_image.SacoImageDataset`."""
        ds = SacoImageDataset(json_path)
        n = len(ds) if limit is None else min(limit, len(ds))
        return cls((ds[i] for i in range(n)), teacher, mask_size, keep_full)

    def __len__(self) -> int:
        return len(self.image_of)

    def pairs_of_image(self) -> list[torch.Tensor]:
        """For each image, the (n_i,) int64 indices of its pairs."""
        order = torch.argsort(self.image_of, stable=True)
        counts = torch.bincount(self.image_of, minlength=len(self.pixels)).tolist()
        return list(torch.split(order, counts))

    def batch(self, idx, hflip: torch.Tensor | None = None):
        """Model inputs and loss targets for pair indices ``idx`` (B,).

        ``hflip`` (B,) bool flips a pair left-right, or (B,) int64 is a :func:`dihedral` code per pair (pairs
        of one image must agree). Images are sent once: ``pixel_values`` (I, 3, S, S) with ``image_index``
        (B,) mapping pairs to them.
        """
        img, image_index, code_img = self._images(idx, hflip)
        px = self.pixels[img]  # (I, 3, S, S)
        targets = []
        for j, p in enumerate(idx.tolist()):
            code = int(code_img[image_index[j]])
            targets.append({"masks": dihedral(self.masks[p], code), "boxes_xyxy": dihedral_boxes(self.boxes[p], code)})
        px = torch.stack([dihedral(x, int(c)) for x, c in zip(px, code_img)]) if code_img.any() else px
        t = self.phrase_of[idx]
        inputs = {"pixel_values": px, "input_ids": self.input_ids[t], "attention_mask": self.attention_mask[t],
                  "image_index": image_index}
        return inputs, targets

    def phrase_targets(self, idx, hflip: torch.Tensor | None = None) -> torch.Tensor:
        """(I, T, m, m) float: every phrase's union mask on each image of :meth:`batch` ``(idx, hflip)``, in
        the order of its ``pixel_values``."""
        img, _, code_img = self._images(idx, hflip)
        maps = self.phrase_maps[img].float()  # (I, T, m, m)
        return torch.stack([dihedral(m, int(c)) for m, c in zip(maps, code_img)]) if code_img.any() else maps

    def _images(self, idx, hflip: torch.Tensor | None):
        """Distinct images of pairs ``idx``: indices (I,), each pair's position among them (B,), and each
        image's :func:`dihedral` code (I,) int64 (from its pairs' ``hflip``; all 0 without one)."""
        img, image_index = torch.unique(self.image_of[idx], return_inverse=True)  # (I,), (B,)
        code_img = torch.zeros(len(img), dtype=torch.long)
        if hflip is not None:
            code_img = code_img.index_put_((image_index,), hflip.long())
        return img, image_index, code_img


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 symmetries of the square applied to ``x`` (..., H, W), H == W: bit 2 transposes, then bit
    0 flips left-right and bit 1 top-bottom (code 1 = a horizontal flip; 0 = unchanged)."""
    if code & 4:
        x = x.transpose(-1, -2)
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    return x


def dihedral_boxes(b: torch.Tensor, code: int) -> torch.Tensor:
    """(N, 4) XYXY boxes in [0, 1] under the same symmetry as :func:`dihedral` ``(masks, code)``."""
    if not len(b):
        return b
    if code & 4:
        b = b[:, [1, 0, 3, 2]]
    if code & 1:
        b = torch.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], dim=1)
    if code & 2:
        b = torch.stack([b[:, 0], 1 - b[:, 3], b[:, 2], 1 - b[:, 1]], dim=1)
    return b


def saco_dir(data_root: Path) -> Path:
    """The folder holding ``train.json`` (and ``val.json``): ``<data_root>/saco_image`` or ``data_root`` itself."""
    for cand in (data_root / "saco_image", data_root):
        if (cand / "train.json").is_file():
            return cand
    raise Sam3m4Error(f"{data_root}: no saco_image/train.json (generate it with 'sam3m4 data synth')")
