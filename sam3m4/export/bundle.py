"""Verification bundles: an ExecuTorch BundledProgram (``.bpte``) of a ``.pte`` with real val inputs and the
eager reference outputs, so the program can be checked where it runs (a phone, a Mac) with ExecuTorch's own
runtime, and the result imported back (``sam3m4 device import``).

    cases = bundle_cases(student, tracker, images=val, videos=val_videos, k=8)   # {method: [BundleCase]}
    r = export_pte(..., on_program=bundle_writer(cases, written))       # writes <pte stem>.bpte beside the .pte
    result = verify_bundle(written[0].path)                             # on this host, where the flow runs
    result.methods["forward"].mask_iou, result.methods["forward"].passed, result.bundle_sha256

A bundle holds the ``.pte``'s program bytes unchanged plus, per method, K test cases (ExecuTorch
``MethodTestSuite`` of ``MethodTestCase``): the inputs of K val pairs spread evenly over the val set, and what
the eager model that was exported (the model in the export's quant mode; for QNN the float student, which the
flow quantizes itself) returns for them. Methods (B = 1, S = preset size, T = 32, D = width, Q = queries):

* ``encode_text``: the pair's phrase tokenized as the app does (CLIP BPE; a restricted table remapped) ->
  prompt_tokens (1,T,D), prompt_mask (1,T);
* ``forward``: the pair's image resized to (1,3,S,S) in [-1,1] + the eager prompt of its phrase -> the five
  image-path outputs (mask_logits (1,Q,S/4,S/4) ...);
* ``track``: K consecutive frames of the first val video with objects (image pairs when there is none), each with
  the state eager reached after the frames before it -> mask_logits, scores (1,Q), new state.

Verification (:func:`verify_bundle`, and the phone's result in :class:`BundleResult`) is per method: passed =
every case within ExecuTorch's elementwise check ``|out - ref| <= atol + rtol * |ref|`` at :data:`RTOL` /
:data:`ATOL` (the tolerances of ExecuTorch's ``example_runner --output_verification``), the max abs error over
cases and outputs, and for ``forward`` / ``track`` the mean mask IoU of ``mask_logits > 0`` against the
reference (over the queries the reference keeps, score >= 0.5; all queries when it keeps none), which is the
gated number (``bundle_mask_iou``): an fp16 or int8 NPU program rarely passes a 1e-3 elementwise check yet
segments the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sam3m4.errors import DataFormatError
from sam3m4.export.export import method_module
from sam3m4.export.runtime import mask_agreement
from sam3m4.fileio import atomic_write_bytes, atomic_write_json
from sam3m4.models.preprocess import to_pixels
from sam3m4.models.tokenizer import get_tokenizer
from sam3m4.results.store import sha256_file
from sam3m4.schemas import load_file

K_DEFAULT = 8
"""Test cases per method in a bundle."""
RTOL, ATOL = 1e-3, 1e-5
"""The elementwise check of ExecuTorch's ``example_runner --output_verification`` (``VerifyResultWithBundled
ExpectedOutput``): a case passes when every output element is within ``atol + rtol * |ref|``."""
RESULT_FORMAT = "sam3m4.bundle_result/1"
"""``format`` of a bundle result JSON (written here by :func:`verify_bundle`, or from a phone's outputs)."""
MASK_METHODS = {"forward": (0, (1, 3)), "track": (0, (1,))}
"""Method -> (index of mask_logits, indices whose sigmoid product is the query score) in its outputs."""


@dataclass
class BundleCase:
    """One test case: a method's inputs and the eager model's outputs for them (batch 1, contiguous)."""

    inputs: tuple[torch.Tensor, ...]
    expected: tuple[torch.Tensor, ...]
    source: str
    """Which val item it comes from (``val pair 12 "red circle"``, ``val video 3 frame 5``)."""


@dataclass
class BundleFile:
    """A ``.bpte`` written next to its ``.pte``."""

    path: Path
    pte: Path
    """The ``.pte`` whose program it bundles (same bytes)."""
    sha256: str
    size_bytes: int
    cases: dict[str, int] = field(default_factory=dict)
    """Method -> number of test cases."""
    sources: dict[str, list[str]] = field(default_factory=dict)
    """Method -> :attr:`BundleCase.source` of each case."""

    def to_dict(self) -> dict:
        return {"path": str(self.path), "pte": str(self.pte), "sha256": self.sha256, "size_bytes": self.size_bytes,
                "cases": self.cases, "sources": self.sources}


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when n <= k)."""
    return list(range(n)) if n <= k else sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


@torch.no_grad()
def bundle_cases(student, tracker=None, *, images, videos=None, k: int = K_DEFAULT, tokenizer=None,
                 methods=("encode_text", "forward", "track"), references: dict | None = None
                 ) -> dict[str, list[BundleCase]]:
    """K test cases per method from real val data, with the eager outputs of ``student`` (and ``tracker``).

    ``images``: a :class:`~sam3m4.data.SacoImageDataset` (the Stage 4 / 5 val pairs); ``videos``: a
    :class:`~sam3m4.data.SacoVideoDataset` or None (``track`` then steps through image pairs);
    ``tokenizer``: what the app tokenizes with (default CLIP; a restricted table needs its
    :class:`~sam3m4.export.token_table.RestrictedTokenizer`: pairs whose phrase it cannot map are skipped).
    ``track`` is included only with a tracker. ``references``: ``{"forward" | "track": module}`` computing a method's
    expected outputs instead of the eager model (an XNNPACK static-int8 program: the converted graphs calibrated as
    the program was, :func:`sam3m4.export.case.converted_references`). A ValueError when no val pair can be used.
    """
    references = references or {}
    if k < 1:
        raise ValueError(f"bundle cases: k must be >= 1, got {k}")
    tok = tokenizer or get_tokenizer(student.context_length)
    text = method_module(student, "encode_text")
    picked, cases = [], {m: [] for m in methods if m != "track" or tracker is not None}
    spread = _spread(len(images), k)  # then later pairs, for phrases a restricted vocabulary cannot tokenize
    order = spread + [i for i in range(len(images)) if i not in set(spread)]
    for i in order:
        if len(picked) == k:
            break
        sample = images[i]
        try:
            enc = tok([sample.phrase])
        except ValueError:  # a restricted vocabulary without this phrase's tokens
            continue
        ids, mask = enc["input_ids"].long().contiguous(), enc["attention_mask"].long().contiguous()  # (1, T)
        prompt = tuple(t.contiguous() for t in text(ids, mask))  # (1,T,D), (1,T)
        pixels = to_pixels([sample.image], student.image_size).contiguous()  # (1, 3, S, S) in [-1, 1]
        picked.append((sample, prompt, pixels))
        where = f"val pair {sample.pair_id} {sample.phrase!r}"
        if "encode_text" in cases:
            cases["encode_text"].append(BundleCase((ids, mask), _plain(prompt), where))
        if "forward" in cases:
            inputs = (pixels, *prompt)
            forward = references.get("forward") or method_module(student, "forward")
            cases["forward"].append(BundleCase(inputs, _plain(forward(*inputs)), where))
    if not picked:
        raise ValueError(f"no val pair of {getattr(images, 'json_path', 'the val set')} can be tokenized for the "
                         "bundle (a restricted vocabulary without any val phrase?)")
    if "track" in cases:
        cases["track"] = _track_cases(student, tracker, picked, videos, k, tok, references.get("track") or tracker)
    return cases


def _plain(outputs) -> tuple[torch.Tensor, ...]:
    return tuple(t.detach().float().contiguous() for t in outputs)


def _track_cases(student, tracker, picked, videos, k: int, tok, reference) -> list[BundleCase]:
    """K streaming steps from ``tracker``'s initial memory: each case's state is what ``reference`` (the tracker,
    or the program's converted ``track`` graph) reached after the steps before it."""
    frames, phrase, where = [], None, []
    if videos is not None and len(videos):
        for i in range(len(videos)):
            pair = videos.pairs[i]
            video = videos.videos[pair["video_id"]]
            try:
                enc = tok([pair["noun_phrase"]])
            except ValueError:
                continue
            n = min(k, video["length"])
            frames = [videos.frame(video["id"], t) for t in range(n)]
            phrase, where = enc, [f"val video {video['id']} {pair['noun_phrase']!r} frame {t}" for t in range(n)]
            break
    if not frames:  # no usable video: step through the image pairs with the first pair's phrase
        phrase = None
        frames = [s.image for s, _, _ in picked]
        where = [f"val pair {s.pair_id} image as frame {t}" for t, (s, _, _) in enumerate(picked)]
        prompt = picked[0][1]
    else:
        ids, mask = phrase["input_ids"].long(), phrase["attention_mask"].long()
        prompt = tuple(t.contiguous() for t in method_module(student, "encode_text")(ids, mask))
    state = tracker.init_state(1).detach().contiguous()  # (1, L + Q, D)
    out = []
    for frame, src in zip(frames, where):
        inputs = (to_pixels([frame], student.image_size).contiguous(), *prompt, state)
        expected = _plain(reference(*inputs))
        out.append(BundleCase(inputs, expected, src))
        state = expected[2]
    return out


def write_bundle(program, path: str | Path, pte: str | Path, cases: dict[str, list[BundleCase]]) -> BundleFile:
    """Serialize an ExecuTorch BundledProgram of ``program`` (the ``ExecutorchProgramManager`` that
    ``to_executorch`` returned for ``pte``) with ``cases`` for the methods it has, written atomically to ``path``.

    ExecuTorch checks each case's input count, dtypes and output dtypes against the program (AssertionError)."""
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    have = set(program.methods)
    suites = [MethodTestSuite(method_name=m, test_cases=[MethodTestCase(inputs=list(c.inputs),
                                                                        expected_outputs=list(c.expected))
                                                         for c in cs])
              for m, cs in sorted(cases.items()) if m in have and cs]
    if not suites:
        raise ValueError(f"{path}: no test case for any method of the program ({', '.join(sorted(have))})")
    buffer = serialize_from_bundled_program_to_flatbuffer(BundledProgram(program, suites))
    path = Path(path)
    atomic_write_bytes(path, buffer)
    used = {s.method_name for s in suites}
    return BundleFile(path=path, pte=Path(pte), sha256=sha256_file(path), size_bytes=len(buffer),
                      cases={m: len(cases[m]) for m in sorted(used)},
                      sources={m: [c.source for c in cases[m]] for m in sorted(used)})


def bundle_writer(cases: dict[str, list[BundleCase]], written: list, errors: list) -> Callable:
    """An ``on_program`` hook for :func:`~sam3m4.export.export.export_pte`: writes ``<pte stem>.bpte`` for every
    ``.pte`` it writes, appending :class:`BundleFile` to ``written`` or ``(pte, error)`` to ``errors`` (a failed
    bundle never fails the export)."""

    def hook(pte: Path, program, methods) -> None:
        try:
            written.append(write_bundle(program, Path(pte).with_suffix(".bpte"), pte,
                                        {m: cases.get(m, []) for m in methods}))
        except Exception as err:  # noqa: BLE001  (recorded by the caller)
            errors.append((Path(pte), f"{type(err).__name__}: {err}"[:800]))

    return hook


# --- results -----------------------------------------------------------------------------------------------
class MethodResult(BaseModel):
    """One method of a bundle run on a device (or here): how its outputs compare with the bundled reference."""

    model_config = ConfigDict(extra="forbid")
    cases: int = Field(ge=1, description="test cases run")
    passed: bool = Field(description=f"every case within |out - ref| <= atol + rtol * |ref| (rtol/atol below)")
    failed_cases: list[int] = Field(default_factory=list, description="indices of the cases that did not pass")
    max_abs_error: float = Field(ge=0, allow_inf_nan=False, description="max |out - ref| over cases and outputs")
    mask_iou: float | None = Field(default=None, ge=0, le=1, description="mean mask IoU vs the reference "
                                   "(forward, track); null for a method without masks")


class BundleResult(BaseModel):
    """A bundle run: which ``.bpte`` (by sha256), where, and per method the outcome. The JSON ``sam3m4 device
    import`` reads (format :data:`RESULT_FORMAT`)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["sam3m4.bundle_result/1"] = RESULT_FORMAT
    bundle: str = Field(min_length=1, description="the .bpte file name")
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the .bpte that was run")
    device: str = Field(min_length=1, description="iPhone15,4 / samsung SM-S928B / this host")
    os: str = Field(min_length=1)
    runtime: str = Field(min_length=1, description="what ran it (ExecuTorch version, runner)")
    rtol: float = Field(default=RTOL, ge=0)
    atol: float = Field(default=ATOL, ge=0)
    methods: dict[str, MethodResult] = Field(min_length=1)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.methods.values())

    @property
    def mask_iou(self) -> float | None:
        """The worst method's mask IoU (None when no method has masks): the gated ``bundle_mask_iou``."""
        found = [m.mask_iou for m in self.methods.values() if m.mask_iou is not None]
        return min(found) if found else None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.model_dump())


def load_bundle_result(path: str | Path) -> BundleResult:
    """A bundle result JSON read through the schemas layer (:func:`sam3m4.schemas.load_file`: size-bounded, finite
    numbers, strict types); one-line DataFormatError naming the file and the field."""
    return load_file(path, BundleResult)


def is_bundle_result(path: str | Path) -> bool:
    """True when ``path`` is JSON whose top-level ``format`` names a bundle result (else: a benchmark file)."""
    try:
        head = Path(path).read_text(encoding="utf-8", errors="replace")
        data = json.loads(head) if head.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("sam3m4.bundle_result/")


def compare_outputs(method: str, outputs: list[list[torch.Tensor]], expected: list[list[torch.Tensor]],
                    rtol: float = RTOL, atol: float = ATOL) -> MethodResult:
    """Per-case outputs of a method against the bundled reference -> :class:`MethodResult`."""
    failed, worst, ious = [], 0.0, []
    for i, (out, ref) in enumerate(zip(outputs, expected)):
        out = [o.float() for o in out]
        ref = [r.float() for r in ref]
        ok = len(out) == len(ref) and all(o.shape == r.shape and bool(((o - r).abs() <= atol + rtol * r.abs()).all())
                                          for o, r in zip(out, ref))
        if not ok:
            failed.append(i)
        worst = max([worst] + [float((o - r).abs().max()) for o, r in zip(out, ref) if o.shape == r.shape])
        if method in MASK_METHODS:
            m, score_at = MASK_METHODS[method]
            scores = torch.ones_like(ref[score_at[0]])
            for j in score_at:
                scores = scores * ref[j].sigmoid()
            ious.append(mask_agreement(out[m], ref[m], scores)[0])
    return MethodResult(cases=len(expected), passed=not failed, failed_cases=failed, max_abs_error=worst,
                        mask_iou=float(np.mean(ious)) if ious else None)


def _element(parent, field_offset: int, j: int, cls):
    """Element ``j`` of a vector-of-tables field of a generated flatbuffer object, as ``cls`` (the generated
    accessors of ExecuTorch 1.5.1 call a module instead of its class, so they are not used)."""
    import flatbuffers

    tab = parent._tab
    o = flatbuffers.number_types.UOffsetTFlags.py_type(tab.Offset(field_offset))
    x = tab.Indirect(tab.Vector(o) + j * 4)
    obj = cls()
    obj.Init(tab.Bytes, x)
    return obj


def read_bundle(path: str | Path) -> dict[str, list[tuple[list[torch.Tensor], list[torch.Tensor]]]]:
    """{method: [(inputs, expected outputs)]} read back from a ``.bpte`` with ExecuTorch's generated flatbuffer
    classes (zero copy; ExecuTorch's ``deserialize_from_flatbuffer_to_bundled_program`` goes through flatc and
    JSON and took ~20 s for a 12 MB bundle here). Tensor values only (the sam3m4 methods take and return tensors)."""
    from executorch.devtools.bundled_program.serialize.generated.bundled_program_flatbuffer import (
        BundledMethodTestCase as FbCase, BundledMethodTestSuite as FbSuite, BundledProgram as FbProgram,
        Tensor as FbTensor, Value as FbValue, ValueUnion)
    from executorch.exir.scalar_type import ScalarType

    dtypes = {ScalarType.FLOAT: torch.float32, ScalarType.LONG: torch.int64, ScalarType.INT: torch.int32,
              ScalarType.HALF: torch.float16, ScalarType.BOOL: torch.bool, ScalarType.BYTE: torch.uint8,
              ScalarType.CHAR: torch.int8, ScalarType.DOUBLE: torch.float64}
    buf = bytearray(Path(path).read_bytes())

    def tensor(value, where: str) -> torch.Tensor:
        if value.ValType() != ValueUnion.ValueUnion.Tensor:
            raise DataFormatError(f"{path}: {where}: not a tensor (value type {value.ValType()})")
        table = value.Val()
        t = FbTensor.Tensor()
        t.Init(table.Bytes, table.Pos)
        sizes = [int(x) for x in t.SizesAsNumpy()] if t.SizesLength() else []
        dtype = dtypes[ScalarType(t.ScalarType())]
        if not t.DataLength():
            return torch.zeros(sizes, dtype=dtype)
        return torch.frombuffer(bytearray(t.DataAsNumpy().tobytes()), dtype=dtype).reshape(sizes)

    root = FbProgram.BundledProgram.GetRootAs(buf, 0)
    out = {}
    for j in range(root.MethodTestSuitesLength()):
        suite = _element(root, 6, j, FbSuite.BundledMethodTestSuite)
        name = suite.MethodName()
        name = name.decode() if isinstance(name, bytes) else name
        cases = []
        for i in range(suite.TestCasesLength()):
            c = _element(suite, 6, i, FbCase.BundledMethodTestCase)
            cases.append(([tensor(_element(c, 4, k, FbValue.Value), f"{name}[{i}].inputs[{k}]")
                           for k in range(c.InputsLength())],
                          [tensor(_element(c, 6, k, FbValue.Value), f"{name}[{i}].expected_outputs[{k}]")
                           for k in range(c.ExpectedOutputsLength())]))
        out[name] = cases
    return out


def verify_bundle(path: str | Path, *, device: str | None = None, rtol: float = RTOL,
                  atol: float = ATOL) -> BundleResult:
    """Run every test case of a ``.bpte`` with the ExecuTorch runtime on this host and compare with its reference.

    ``passed`` is the runtime's own verdict (``BundledModule.verify_result_with_bundled_expected_output``, the
    check ``example_runner --output_verification`` runs on a device); max abs error and mask IoU come from the
    outputs of the same inputs run through the program loaded from the bundle. Only programs whose delegates
    this host's runtime has run here (XNNPACK; Core ML on macOS): others raise RuntimeError naming the file."""
    import platform
    from importlib import metadata

    from executorch.extension.pybindings import portable_lib

    path = Path(path)
    data = path.read_bytes()
    try:
        bundle = portable_lib._load_bundled_program_from_buffer(data)
        module = portable_lib._load_for_executorch_from_bundled_program(bundle)
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"{path}: the ExecuTorch runtime could not load the bundled program "
                           f"({type(err).__name__}: {err})") from err
    methods = {}
    for method, cases in read_bundle(path).items():
        outputs, runtime_failed = [], []
        for i, (inputs, _) in enumerate(cases):
            try:
                bundle.verify_result_with_bundled_expected_output(method, i, rtol, atol)
            except RuntimeError:  # "Result verification failed with status ..."
                runtime_failed.append(i)
            outputs.append(list(module.run_method(method, list(inputs))))
        result = compare_outputs(method, outputs, [ref for _, ref in cases], rtol, atol)
        methods[method] = result.model_copy(update={"passed": not runtime_failed, "failed_cases": runtime_failed})
    host = device or f"this host ({platform.machine()} {platform.system()})"
    return BundleResult(bundle=path.name, bundle_sha256=sha256_file(path), device=host,
                        os=f"{platform.system()} {platform.release()}",
                        runtime=f"ExecuTorch {metadata.version('executorch')} pybindings (portable_lib BundledModule)",
                        rtol=rtol, atol=atol, methods=methods)
