"""A 4-bit token table that the stock ExecuTorch CPU kernels can run: int8 rows + per-group scales.

In the quantized modes the CLIP token table (``nn.Embedding``, V x D, V = 49408) holds a torchao
``IntxUnpackedToInt8Tensor``: 4-bit values stored one per int8, one fp32 scale per group of 32. Exported as is,
ExecuTorch's quant fusion turns the lookup into ``quantized_decomposed::embedding_4bit``, a kernel the pip
runtime does not register (seen here: ``Missing operator: [1] quantized_decomposed::embedding_4bit.out``), and
without fusion ``torchao::dequantize_affine`` is missing as well. Phone builds that link ExecuTorch's quantized
kernels can run the fused op; any runtime can run this module's rewrite:

    ids (B,T) int64 -> rows = embedding(ids, qdata) (B,T,D) int8, s = embedding(ids, scale) (B,T,D/32)
                    -> (rows - zero_point) * s per group -> (B,T,D) float32

which is the same arithmetic as torchao's ``dequantize_affine`` followed by the lookup (bit-exact in fp32), and
stores the table at 1 byte per weight (int8 rows; nibble packing would need the quantized kernels).

    with int8_row_tables(model) as n:    # swaps every quantized nn.Embedding, restores them on exit
        ep = torch.export.export(...)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sam3m4.errors import ConfigError, DataFormatError, Sam3m4Error
from sam3m4.fileio import atomic_write_json
from sam3m4.models.tokenizer import EOT_ID, PAD_ID, SOT_ID, get_tokenizer
from sam3m4.schemas import load_file
from sam3m4.schemas.vocab import CLIP_VOCAB, VocabFile

VOCAB = CLIP_VOCAB  # 49408
"""Rows of the CLIP token table (:data:`sam3m4.models.tokenizer.VOCAB_SIZE`)."""


class Int8RowEmbedding(nn.Module):
    """Lookup of a group-quantized table: ids (...) int64 -> (..., D) in the table's float dtype."""

    def __init__(self, weight):
        super().__init__()
        v, d = weight.qdata.shape
        self.group = int(weight.block_size[-1])
        if tuple(weight.block_size) != (1, self.group) or d % self.group:
            raise ValueError(f"token table: block_size {tuple(weight.block_size)} is not per-row groups of D={d}")
        self.register_buffer("qdata", weight.qdata.detach().clone())  # (V, D) int8, values in the int4 range
        self.register_buffer("scale", weight.scale.detach().clone().reshape(v, d // self.group))  # (V, D/g)
        zero = weight.zero_point.detach().clone().reshape(v, d // self.group)
        self.register_buffer("zero_point", zero if torch.count_nonzero(zero) else None)  # None: symmetric
        self.out_dtype = weight.dtype

    @property
    def num_embeddings(self) -> int:
        """Rows V, as :class:`torch.nn.Embedding` names them."""
        return self.qdata.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.qdata).float()  # (..., D)
        rows = rows.unflatten(-1, (-1, self.group))  # (..., D/g, g)
        if self.zero_point is not None:
            rows = rows - F.embedding(ids, self.zero_point).float()[..., None]
        scale = F.embedding(ids, self.scale).float()[..., None]  # (..., D/g, 1)
        return (rows * scale).flatten(-2).to(self.out_dtype)


def _quantized_embeddings(model: nn.Module):
    from torchao.quantization import IntxUnpackedToInt8Tensor

    for name, module in model.named_modules():
        if type(module) is nn.Embedding and isinstance(module.weight, IntxUnpackedToInt8Tensor):
            if module.padding_idx is not None or module.max_norm is not None:
                raise ValueError(f"{name}: padding_idx / max_norm embeddings are not supported by the rewrite")
            yield name, module


@contextmanager
def int8_row_tables(model: nn.Module):
    """Swap every torchao-quantized ``nn.Embedding`` of ``model`` for :class:`Int8RowEmbedding` (same numbers),
    yield how many were swapped, and put the originals back on exit (also on error)."""
    swapped = []
    try:
        for name, module in list(_quantized_embeddings(model)):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, Int8RowEmbedding(module.weight))
            swapped.append((parent, attr, module))
        yield len(swapped)
    finally:
        for parent, attr, module in swapped:
            setattr(parent, attr, module)


# --- a restricted vocabulary: only the rows a deployment's phrases use ---------------------------------------
class UnknownTokenError(Sam3m4Error, ValueError):
    """A phrase needs a token the exported (restricted) token table does not hold."""


@dataclass(frozen=True)
class Vocabulary:
    """The CLIP ids a deployment keeps, in the exported table's row order (row ``i`` = CLIP id ``ids[i]``).

    Built from the deployment's phrase list: every token of every phrase, plus ``<start_of_text>``,
    ``<end_of_text>`` and the pad id 0. The app tokenizes with CLIP as usual and maps ids with :meth:`remap`
    (shipped as ``<pte stem>.vocab.json``); a phrase outside the list fails there with one line instead of
    reading a wrong row."""

    ids: tuple[int, ...]
    """Sorted CLIP ids kept (K of them)."""
    source: str = "<phrases>"
    """Where the phrases came from (named in the unknown-token error)."""

    @classmethod
    def from_phrases(cls, phrases, source: str = "<phrases>", tokenizer=None) -> "Vocabulary":
        tok = tokenizer or get_tokenizer()
        ids = {PAD_ID, SOT_ID, EOT_ID}
        for phrase in phrases:
            ids.update(tok.encode(phrase))
        return cls(tuple(sorted(ids)), source)

    @classmethod
    def from_file(cls, path: str | Path) -> "Vocabulary":
        """A phrase list (one phrase per line; blank lines and ``#`` comments ignored) or a saved
        ``.vocab.json`` (:meth:`save`)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: vocabulary / phrase list not found")
        if path.suffix == ".json":  # checked by sam3m4.schemas.vocab.VocabFile: ints in [0, 49408), sorted, unique
            data = load_file(path, VocabFile)
            return cls(tuple(data.clip_ids), data.source or str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataFormatError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        phrases = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if not phrases:
            raise DataFormatError(f"{path}: no phrases (one noun phrase per line)")
        return cls.from_phrases(phrases, source=str(path))

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), {"clip_ids": list(self.ids), "source": self.source, "rows": len(self.ids)})

    @property
    def lookup(self) -> torch.Tensor:
        """(49408,) int64: CLIP id -> row, -1 where the id is not kept."""
        table = torch.full((VOCAB,), -1, dtype=torch.long)
        table[torch.tensor(self.ids)] = torch.arange(len(self.ids))
        return table

    def remap(self, input_ids: torch.Tensor, phrases=None) -> torch.Tensor:
        """CLIP ids (B, T) -> row ids of the restricted table; :class:`UnknownTokenError` (one line, naming
        the phrase and token) for an id the deployment did not list."""
        rows = self.lookup[input_ids]
        if bool((rows < 0).any()):
            b, t = (int(v) for v in (rows < 0).nonzero()[0])
            cid = int(input_ids[b, t])
            phrase = f"phrase {phrases[b]!r}" if phrases is not None else f"row {b}"
            raise UnknownTokenError(f"{phrase}: token id {cid} ({_token_text(cid)!r}) is not in the deployment "
                                    f"vocabulary ({len(self.ids)} tokens from {self.source}); add the phrase there "
                                    f"and export again")
        return rows


def _token_text(cid: int) -> str:
    tok = get_tokenizer()
    if not hasattr(tok, "_decoder"):
        tok._decoder = {i: s for s, i in tok.encoder.items()}
    return tok._decoder.get(cid, "?")


class RestrictedTokenizer:
    """CLIP tokenization (SAM 3's padding) followed by :meth:`Vocabulary.remap`: what the app runs in front of
    a ``.pte`` exported with a restricted table."""

    def __init__(self, vocabulary: Vocabulary, tokenizer=None):
        self.vocabulary, self.tokenizer = vocabulary, tokenizer or get_tokenizer()

    def __call__(self, texts) -> dict[str, torch.Tensor]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tokenizer(texts)
        return {"input_ids": self.vocabulary.remap(enc["input_ids"], texts), "attention_mask": enc["attention_mask"]}


def _rows(weight, ids: torch.Tensor):
    """The table's rows ``ids`` as the same kind of tensor (plain float, or torchao int-x: same values)."""
    from torchao.quantization import IntxUnpackedToInt8Tensor

    if not isinstance(weight, IntxUnpackedToInt8Tensor):
        return nn.Parameter(weight.detach()[ids].clone(), requires_grad=False)
    if tuple(weight.block_size)[0] != 1:
        raise ValueError(f"token table: block_size {tuple(weight.block_size)} is not per-row")
    return nn.Parameter(IntxUnpackedToInt8Tensor(
        weight.qdata[ids].clone(), weight.scale[ids].clone(), weight.zero_point[ids].clone(), weight.target_dtype,
        tuple(weight.block_size), weight.dtype, weight.activation_quantization), requires_grad=False)


@contextmanager
def restricted_token_table(model: nn.Module, vocabulary: Vocabulary):
    """Swap every 49408-row token table of ``model`` for its ``vocabulary`` rows (same values, same storage
    kind), yield how many were swapped, and put the originals back on exit. The swapped model must be fed
    :meth:`Vocabulary.remap` ped ids; export it inside the ``with`` (XNNPACK's :func:`int8_row_tables` then
    applies to the smaller table)."""
    ids = torch.tensor(vocabulary.ids)
    swapped = []
    try:
        for name, module in list(model.named_modules()):
            if type(module) is not nn.Embedding or module.num_embeddings != VOCAB:
                continue
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            small = nn.Embedding(len(ids), module.embedding_dim, device="meta")
            small.weight = _rows(module.weight, ids)
            setattr(parent, attr, small)
            swapped.append((parent, attr, module))
        yield len(swapped)
    finally:
        for parent, attr, module in swapped:
            setattr(parent, attr, module)
