"""Export a (quantized) student to one ExecuTorch ``.pte`` for one backend and quant mode.

    model, meta = load_quantized("checkpoints/quantized/int4")             # sam3m4.quantize.storage
    r = export_pte(model, backend="coreml", mode="int4", out_dir="checkpoints/export", model_name="student",
                   tracker=tracker)        # a (video-distilled) StudentTracker around this student, in the same mode
    r.ok, r.path, r.size_bytes, r.delegation["forward"].coverage, r.failed_stage, r.error

Flow: check the mode is supported (:mod:`.flows`) -> [quantize: QNN only, PT2E from the float student] ->
export (``torch.export`` of each wrapper, static shapes) -> lower (``to_edge_transform_and_lower`` of
``{method: ExportedProgram}`` with the flow's partitioners) -> serialize (``to_executorch``, written to a
temporary name then renamed). A failure never raises: the result names the stage and the error.

Methods in the ``.pte`` (B = 1, S = preset size, T = 32 tokens, D = width, Q = queries, L = latents):

* ``encode_text``: input_ids (1,T) int64, attention_mask (1,T) int64 -> prompt_tokens (1,T,D), prompt_mask (1,T);
* ``forward`` (image, cached prompt): pixels (1,3,S,S) in [-1,1], prompt_tokens (1,T,D), prompt_mask (1,T)
  float -> mask_logits (1,Q,S/4,S/4), query_logits (1,Q), boxes_xyxy (1,Q,4), presence_logit (1,1),
  semantic_logits (1,1,S/4,S/4);
* ``track`` (with a tracker): pixels, prompt_tokens, prompt_mask, state (1,L+Q,D) -> mask_logits, scores (1,Q),
  new state.

Each method carries the weights it uses (``forward`` and ``track`` both use the image encoder); XNNPACK stores
its delegate weights as named data deduplicated across methods (tiny fp16: 17.3 MB for the three methods
together vs 21.1 MB lowered one by one). Layout: one multi-method program; if lowering the methods together
fails, each method is lowered alone into ``<stem>.<method>.pte`` and ``layout`` says why.

XNNPACK, quantized modes: the 4-bit token table goes in as int8 rows + group scales (:mod:`.token_table`),
because the pip ExecuTorch runtime has no ``quantized_decomposed::embedding_4bit`` kernel;
``fused_4bit_table=True`` keeps the fused 4-bit op for runtimes built with ExecuTorch's quantized kernels.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from sam3m4.export.delegation import Delegation, count_delegation, merge
from sam3m4.export.flows import get_flow
from sam3m4.export.int8_share import Int8Share, int8_mac_share
from sam3m4.export.program import ExportedProgram
from sam3m4.export.token_table import int8_row_tables
from sam3m4.fileio import atomic_write_bytes
from sam3m4.models.export_wrappers import COMPONENTS, example_inputs, wrap
from sam3m4.progress import progress_bar
from sam3m4.quantize.modes import get_mode
from sam3m4.results import schema
from sam3m4.results.store import NOT_MEASURABLE, UNSUPPORTED, sha256_file

STAGES = ("quantize", "export", "lower", "serialize")
IMAGE_METHODS = ("encode_text", "forward")


@dataclass
class ExportResult:
    """What one export produced, or the stage at which it stopped."""

    backend: str
    """Flow name: ``coreml``, ``qnn`` or ``xnnpack``."""
    mode: str
    """sam3m4 quant mode (``fp16``, ``int4``, ``int8_int4``, ``qat_int4``, ``qat_int8_int4``)."""
    gets: str
    """What the backend received for this mode (:attr:`sam3m4.export.flows.ModeSupport.gets`)."""
    path: Path | None = None
    """The ``.pte`` (``<out_dir>/<model_name>_<backend>_<mode>.pte``); the ``forward`` file when split."""
    files: dict[str, str] = field(default_factory=dict)
    """Method -> path of the ``.pte`` holding it (all the same file in the multi-method layout)."""
    size_bytes: int | None = None
    """Bytes of all distinct ``.pte`` files written."""
    sha256: str | None = None
    """sha256 of :attr:`path`."""
    methods: list[str] = field(default_factory=list)
    """Methods exported, in order (``encode_text``, ``forward`` [, ``track``])."""
    delegation: dict[str, Delegation] = field(default_factory=dict)
    """Method -> :class:`~sam3m4.export.delegation.Delegation` to the flow's backend, from the lowered graph."""
    layout: str = ""
    """``one multi-method program`` or ``split: one .pte per method (<why>)``."""
    failed_stage: str | None = None
    """None on success, else one of :data:`STAGES` (an unsupported mode reports ``lower``)."""
    error: str | None = None
    """One-paragraph error (``Type: message``) of the failed stage, or the unsupported reason."""
    unsupported: bool = False
    """True when the flow declares the mode unsupported; nothing was attempted."""
    unavailable: bool = False
    """True when the backend's toolchain is not on this host (:meth:`Flow.available`); nothing was attempted."""
    int8: dict[str, Int8Share] = field(default_factory=dict)
    """XNNPACK only: method -> share of its MACs in XNNPACK int8 kernels (:mod:`.int8_share`, from the lowered
    graph)."""
    is_npu: bool = False
    """True when the backend is an NPU: :attr:`coverage` is then NPU coverage (``npu_percent`` gate)."""
    seconds: float = 0.0
    """Wall time of the whole export on this host."""

    @property
    def ok(self) -> bool:
        return self.failed_stage is None and self.path is not None

    @property
    def coverage(self) -> float | None:
        """Delegated compute ops / all compute ops over every method in [0, 1] (None before lowering)."""
        return merge(list(self.delegation.values())).coverage if self.delegation else None

    @property
    def program(self) -> ExportedProgram | None:
        """The written ``.pte`` as the next stage takes it (None when the export stopped before writing it)."""
        if not self.ok:
            return None
        return ExportedProgram(path=self.path, sha256=self.sha256, backend=self.backend, mode=self.mode,
                               methods=tuple(self.methods), files={m: Path(p) for m, p in self.files.items()},
                               size_bytes=self.size_bytes or 0)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "mode": self.mode, "gets": self.gets, "ok": self.ok,
                "path": str(self.path) if self.path else None, "files": self.files, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "methods": self.methods, "layout": self.layout,
                "delegation": {m: d.to_dict() for m, d in self.delegation.items()}, "coverage": self.coverage,
                "int8": {m: s.to_dict() for m, s in self.int8.items()},
                "is_npu": self.is_npu, "failed_stage": self.failed_stage, "error": self.error,
                "unsupported": self.unsupported, "unavailable": self.unavailable, "seconds": self.seconds}


class _StageError(Exception):
    def __init__(self, stage: str, err: BaseException | str):
        self.stage = stage
        self.message = err if isinstance(err, str) else _describe(err)
        super().__init__(f"{stage}: {self.message}")


def _describe(err: BaseException, limit: int = 800) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def method_inputs(model, method: str, tracker=None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded batch-1 example inputs of an exported method (``track``: + the tracker's initial state).

    The global RNG is left untouched; inputs are contiguous (the runtime wants dense tensors)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if method == "track":
            if tracker is None:
                raise ValueError("method 'track' needs a tracker")
            inputs = (*example_inputs(model, "forward"), tracker.init_state(1).detach())
        else:
            inputs = example_inputs(model, method)
    return tuple(x.contiguous() for x in inputs)


def method_module(model, method: str, tracker=None) -> torch.nn.Module:
    """The tuple-returning module exported as ``method`` (``track`` is the tracker itself: forward = track)."""
    return tracker if method == "track" else wrap(model, method)


def _has_torchao_weights(module) -> bool:
    """True when a Linear layer holds torchao weights (the token table is torchao-quantized in every mode)."""
    from torchao.quantization import IntxUnpackedToInt8Tensor

    return any(isinstance(m.weight, IntxUnpackedToInt8Tensor) for m in module.modules()
               if type(m) is torch.nn.Linear)


def _check_model(model, tracker, flow, mode: str) -> None:
    """Stage 'quantize': the model must already be in ``mode`` (or float for a PT2E flow)."""
    if model.training or (tracker is not None and tracker.training):
        raise _StageError("quantize", "model in train mode: call .eval() first (BatchNorm)")
    if any("FakeQuantized" in type(m).__name__ for m in model.modules()):
        raise _StageError("quantize", "model still has QAT fake-quantized modules: run qat_convert first")
    quantized = _has_torchao_weights(model)
    if flow.support(mode).pt2e is not None or get_mode(mode).linear is None:
        if quantized:
            want = "the float (fp16-mode) student: this flow quantizes with PT2E" if flow.support(mode).pt2e \
                else "an fp16-mode student"
            raise _StageError("quantize", f"model has torchao-quantized weights; {flow.name}/{mode} needs {want}")
    elif not quantized:
        raise _StageError("quantize", f"model has no torchao-quantized weights; mode {mode} needs them "
                                      f"(load_quantized('<dir of {mode}>') or apply_mode(model, '{mode}'))")


def _export(model, tracker, flow, mode: str, methods: list[str], calibration, row_tables: bool) -> dict:
    """{method: ExportedProgram}; QNN modes with a PT2E scheme are quantized first (stage 'quantize');
    ``row_tables``: 4-bit token tables exported as int8 rows + scales (:mod:`.token_table`)."""
    if row_tables:
        with int8_row_tables(model):
            return _export(model, tracker, flow, mode, methods, calibration, False)
    programs = {}
    for name in progress_bar(methods, desc=f"export {flow.name}/{mode}", unit="method"):
        module, inputs = method_module(model, name, tracker), method_inputs(model, name, tracker)
        if flow.support(mode).pt2e is not None:
            try:
                module = flow.quantize(module, inputs, mode, (calibration or {}).get(name))
            except Exception as err:  # noqa: BLE001
                raise _StageError("quantize", err) from err
        elif flow.quantize_convs is not None and get_mode(mode).convs is not None:
            try:  # the backend's own quantizer on the convolutions (torchao reached only Linear / Embedding)
                module = flow.quantize_convs(module, inputs, mode, (calibration or {}).get(name))
            except Exception as err:  # noqa: BLE001
                raise _StageError("quantize", f"method {name}: convolutions: {_describe(err)}") from err
        try:
            with torch.no_grad():
                programs[name] = torch.export.export(module, inputs)
        except Exception as err:  # noqa: BLE001
            raise _StageError("export", f"method {name}: {_describe(err)}") from err
    return programs


def exported_programs(model, *, backend: str, mode: str, methods, tracker=None, fused_4bit_table: bool = False) -> dict:
    """{method: ExportedProgram} exactly as :func:`export_pte` exports them before lowering (the backend's conv
    quantizer, the int8-row token table): what :mod:`.op_gaps` lowers again for ExecuTorch's Inspector."""
    flow = get_flow(backend)
    return _export(model, tracker, flow, mode, list(methods), None, flow.int8_row_table and not fused_4bit_table)


def _lower(programs: dict, flow, mode: str):
    from executorch.exir import to_edge_transform_and_lower

    try:
        return to_edge_transform_and_lower(programs, partitioner=flow.partitioners(mode))
    except Exception as err:  # noqa: BLE001
        raise _StageError("lower", f"methods {', '.join(programs)}: {_describe(err)}") from err


def _serialize(edge, path: Path):
    """``to_executorch`` with quant fusion (a 4-bit token table left on the CPU becomes ExecuTorch's
    ``quantized_decomposed.embedding_4bit`` instead of dequantize + embedding), written atomically; returns the
    ``ExecutorchProgramManager`` (what a BundledProgram is built from)."""
    from executorch.exir import ExecutorchBackendConfig

    try:
        program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=True))
        atomic_write_bytes(path, program.buffer)
    except Exception as err:  # noqa: BLE001
        raise _StageError("serialize", err) from err
    return program


def export_pte(model, *, backend: str, mode: str, out_dir: str | Path, model_name: str, tracker=None,
               methods=None, calibration: dict | None = None, fused_4bit_table: bool = False,
               on_program: Callable | None = None) -> ExportResult:
    """Export ``model`` (a :class:`~sam3m4.models.student.Student` already in ``mode``, eval) to
    ``<out_dir>/<model_name>_<backend>_<mode>.pte`` with methods ``encode_text``, ``forward`` [, ``track``].

    ``tracker``: a :class:`~sam3m4.models.video.StudentTracker` built on the same student (quantize the tracker,
    not only the student, so its memory layers are in ``mode`` too); exported as ``track``. ``methods``: a subset
    of those (default: all), or of the image path's parts (:data:`~sam3m4.models.export_wrappers.COMPONENTS`,
    for ``sam3m4 bench``'s latency split). ``calibration``: {method: iterable of input tuples} for the PT2E
    quantizers (QNN; XNNPACK's static conv activations, :func:`sam3m4.quantize.xnnpack_int8.calibration_inputs`);
    a method without one: its example inputs once.
    ``fused_4bit_table``: XNNPACK, quantized modes: keep the 4-bit token table for ExecuTorch's
    ``quantized_decomposed::embedding_4bit`` (half the table bytes, but only runtimes built with the quantized
    kernels run it; the pip runtime here does not). ``on_program(pte_path, program_manager, methods)``: called
    after each ``.pte`` is written with the ``to_executorch`` result it came from and the methods it holds (the
    verification bundle, :func:`sam3m4.export.bundle.bundle_writer`; it must not raise). Never raises for a backend failure: see
    :attr:`ExportResult.failed_stage`. Unknown backend / mode -> :class:`~sam3m4.errors.ConfigError`.
    """
    t0 = time.perf_counter()
    flow = get_flow(backend)
    support = flow.support(mode)
    default = [*IMAGE_METHODS, *(["track"] if tracker is not None else [])]
    methods = list(methods or default)
    if set(methods) - set(default) - set(COMPONENTS):
        raise ValueError(f"methods {methods}: choose from {default + list(COMPONENTS)} ('track' needs a tracker)")
    row_tables = flow.int8_row_table and not fused_4bit_table
    result = ExportResult(backend=backend, mode=mode, gets=support.gets, methods=methods, is_npu=flow.is_npu)
    try:
        if not support.supported:
            result.unsupported = True
            raise _StageError("lower", f"unsupported: {support.reason}")
        available, why = flow.available()
        if not available:
            result.unavailable = True
            raise _StageError("lower", why)
        _check_model(model, tracker, flow, mode)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{model_name}_{backend}_{mode}.pte"
        try:  # --- one multi-method program ---
            edge = _lower(_export(model, tracker, flow, mode, methods, calibration, row_tables), flow, mode)
            parts, result.layout = {m: (edge, path) for m in methods}, "one multi-method program"
        except _StageError as err:
            if err.stage != "lower" or len(methods) == 1:
                raise
            # --- fallback: one program per method (re-exported: a failed lowering may leave graphs modified) ---
            parts = {}
            for m in methods:
                p = path if m == "forward" else path.with_name(f"{path.stem}.{m}.pte")
                programs = _export(model, tracker, flow, mode, [m], calibration, row_tables)
                parts[m] = (_lower(programs, flow, mode), p)
            result.layout = f"split: one .pte per method (multi-method lowering failed: {err.message})"
        for m, (edge, _) in parts.items():
            result.delegation[m] = count_delegation(edge.exported_program(m).graph_module, flow.backend_id)
            if flow.backend_id == "XnnpackBackend":
                result.int8[m] = int8_mac_share(edge.exported_program(m).graph_module, flow.backend_id)
        written = {}
        for m, (edge, p) in parts.items():
            if p not in written:
                program = _serialize(edge, p)
                written[p] = p.stat().st_size
                if on_program is not None:
                    on_program(p, program, [n for n, (_, q) in parts.items() if q == p])
            result.files[m] = str(p)
        result.path, result.size_bytes, result.sha256 = path, sum(written.values()), sha256_file(path)
    except _StageError as err:
        result.failed_stage, result.error = err.stage, err.message
    except Exception as err:  # noqa: BLE001  (a bug here must still say where it happened)
        result.failed_stage = "export"
        result.error = f"{_describe(err)} (at {traceback.extract_tb(err.__traceback__)[-1].name})"
    result.seconds = time.perf_counter() - t0
    return result


def records(result: ExportResult, provenance: str = "") -> list[dict]:
    """``ResultsStore.record`` keyword sets for a result (stage5; subject ``<backend>/<mode>``): ``export_ok``,
    and when it succeeded ``pte_mb`` plus ``npu_percent`` (NPU flows) or ``cpu_delegation_percent`` (XNNPACK).

    A failed ``export_ok`` says why in fields: ``outcome`` ``unsupported`` (the flow declares the mode
    unsupported) or ``not_measurable`` (the toolchain is not here), else ``failed_stage`` (where it failed)."""
    subject = f"{result.backend}/{result.mode}"
    note = result.error or result.layout
    prov = provenance or "AOT: ExecuTorch to_edge_transform_and_lower on the host; ops counted in the lowered graph"
    base = dict(stage=schema.STAGE5, subject=subject, provenance=prov, note=note)
    outcome = UNSUPPORTED if result.unsupported else NOT_MEASURABLE if result.unavailable else None
    failed = None if result.ok or outcome else result.failed_stage or "export"
    out = [dict(base, metric=schema.EXPORT_OK, value=result.ok, unit="", failed_stage=failed, outcome=outcome)]
    if result.ok:
        out.append(dict(base, metric=schema.PTE_MB, value=result.size_bytes / 1e6, unit="MB", artifact=result.path))
        metric = schema.NPU_PERCENT if result.is_npu else schema.CPU_DELEGATION_PERCENT
        out.append(dict(base, metric=metric, value=100 * result.coverage, unit="percent"))
        if "forward" in result.int8:  # XNNPACK: the image path's MACs in int8 kernels (from the lowered graph)
            share = result.int8["forward"]
            out.append(dict(base, metric=schema.XNNPACK_INT8_MAC_SHARE, value=share.percent, unit="percent",
                            note=f"image path (forward): {share.summary()}",
                            provenance=prov + "; MACs of conv / linear / matmul layers from their shapes"))
    return out
