"""CLIP BPE tokenizer for SAM 3 noun phrases, offline.

SAM 3's text encoder is a CLIP text transformer (vocabulary 49408, context length 32). Its original code
(facebookresearch/sam3, ``VETextEncoder``) tokenises with OpenAI CLIP's ``SimpleTokenizer`` at
``context_length=32``, pads with id 0 and uses ``attention_mask = tokens != 0`` (start token through end
token are 1). transformers' ``Sam3Processor`` calls its CLIP tokenizer with ``padding="max_length",
max_length=32`` (transformers/models/sam3/processing_sam3.py) and ``Sam3Model`` uses the attention mask to
drop padded positions everywhere it reads text features (DETR encoder/decoder cross-attention, mean pooling
in ``Sam3DotProductScoring``, mask-decoder prompt cross-attention), so the pad id itself never reaches a
result; the CLIP text transformer is causal, so padding after the end token does not change the valid
positions either.

This module reimplements CLIP's byte-level BPE (a copy of the algorithm in open_clip/tokenizer.py, MIT,
OpenAI) reading the merges file that open-clip-torch ships (``open_clip/bpe_simple_vocab_16e6.txt.gz``)
without importing open_clip (which pulls in timm and takes seconds). Ids are CLIP's: ``<start_of_text>``
is 49406, ``<end_of_text>`` is 49407.

Run ``python -m sam3m4.models.tokenizer "red circle"`` to print ids and mask.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path

import regex
import torch

from sam3m4.errors import Sam3m4Error

CONTEXT_LENGTH = 32  # SAM 3's text context (Sam3Config.text_config.max_position_embeddings)
SOT_ID = 49406
EOT_ID = 49407
PAD_ID = 0  # SAM 3's original tokenizer pads with 0; masked out by attention_mask anyway
VOCAB_SIZE = 49408


def default_bpe_path() -> Path:
    """Path of the CLIP merges file shipped by open-clip-torch (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise Sam3m4Error(
            "open_clip: package not installed; it ships the CLIP BPE vocabulary "
            "(pip install open-clip-torch) or pass bpe_path=<bpe_simple_vocab_16e6.txt.gz>"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode table (256 entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _clean(text: str) -> str:
    """CLIP's 'lower' cleaning: ftfy fix (when installed), html unescape twice, collapse whitespace, lower."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs mojibake; plain ASCII phrases are unaffected
        pass
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """CLIP byte-level BPE with SAM 3's padding convention.

    Parameters
    ----------
    bpe_path:
        gzip merges file; defaults to the one inside open-clip-torch.
    context_length:
        output length (32 for SAM 3).
    """

    def __init__(self, bpe_path: str | Path | None = None, context_length: int = CONTEXT_LENGTH):
        path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
        if not path.is_file():
            raise Sam3m4Error(f"{path}: CLIP BPE vocabulary file not found (install open-clip-torch)")
        merges = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges[1 : 49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.context_length = context_length
        self._cache: dict[str, str] = {}
        self._pat = regex.compile(
            r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        assert self.encoder["<start_of_text>"] == SOT_ID and len(self.encoder) == VOCAB_SIZE

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self._cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens."""
        ids: list[int] = []
        for token in regex.findall(self._pat, _clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: str | list[str]) -> dict[str, torch.Tensor]:
        """Tokenise phrases the way SAM 3 does.

        Returns ``{"input_ids": (B, 32) int64, "attention_mask": (B, 32) int64}``: ``[SOT, ids..., EOT, 0...]``,
        mask 1 on SOT..EOT. Phrases longer than 30 BPE tokens are truncated, keeping EOT last (open_clip rule).
        """
        if isinstance(texts, str):
            texts = [texts]
        L = self.context_length
        input_ids = torch.full((len(texts), L), PAD_ID, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(texts), L), dtype=torch.long)  # (B, L)
        for i, text in enumerate(texts):
            toks = [SOT_ID] + self.encode(text) + [EOT_ID]
            if len(toks) > L:
                toks = toks[:L]
                toks[-1] = EOT_ID
            input_ids[i, : len(toks)] = torch.tensor(toks)
            mask[i, : len(toks)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


@lru_cache(maxsize=2)
def get_tokenizer(context_length: int = CONTEXT_LENGTH) -> ClipTokenizer:
    """Process-wide cached tokenizer (building the vocabulary takes ~0.3 s)."""
    return ClipTokenizer(context_length=context_length)


if __name__ == "__main__":
    import sys

    enc = get_tokenizer()(sys.argv[1:] or ["red circle"])
    print(enc["input_ids"].tolist())
    print(enc["attention_mask"].tolist())
