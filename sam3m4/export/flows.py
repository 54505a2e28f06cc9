"""ExecuTorch backends as data: one :class:`Flow` per backend (ExecuTorch ``backends/test/suite/flows`` style).

    from sam3m4.export.flows import FLOWS, get_flow
    flow = get_flow("coreml")
    ok, why = flow.available()               # (False, "coremltools not importable ...") instead of an ImportError
    flow.support("int8_int4")                # ModeSupport(supported=False, reason="Core ML has no dynamic ...")
    flow.partitioners("int4")                # [CoreMLPartitioner(...)], built only when asked

A flow says what its toolchain needs, whether it is here, which partitioners lower to it, and what each of
the five sam3m4 quant modes (:data:`sam3m4.quantize.modes.MODES`) becomes on it, convolutions included: each
backend's own quantizer takes them (XNNPACK: PT2E ``XNNPACKQuantizer`` in :attr:`Flow.quantize_convs`; Core ML:
coremltools weight compression through the ``op_linear_quantizer_config`` compile spec; QNN: ``QnnQuantizer``
on the whole graph; see :mod:`sam3m4.quantize.convs` and docs/quantization.md). Each flow declares its
quantizer's settings (:attr:`Flow.quantizer_settings`: data of :mod:`sam3m4.quantize.backends`, which Stage 4's
host simulation reads too) and the pytest marker of the tests that need it (:attr:`Flow.marker`, registered by
the project's ``conftest.py``). Nothing backend-specific is imported at module import time, so
``import sam3m4.export.flows`` works anywhere.

QNN: ``import executorch.backends.qualcomm...`` without an SDK makes ExecuTorch try to *download* the
Qualcomm SDK, so :func:`_qnn_check` looks at ``QNN_SDK_ROOT`` first and nothing under
``executorch.backends.qualcomm`` is imported unless it points at a directory. The QNN path is
UNTESTED HERE (no SDK on this host); it follows ExecuTorch's own QNN test flow.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable

from sam3m4.errors import ConfigError
from sam3m4.quantize.backends import COREML_QUANTIZER, QNN_QUANTIZER, XNNPACK_QUANTIZER, QuantizerSettings
from sam3m4.quantize.decision import BACKEND_MODES
from sam3m4.quantize.modes import MODES
from sam3m4.quantize.convs import pt2e_convs

QNN_SOC_ENV = "SAM3M4_QNN_SOC"  # Snapdragon to compile for (a key of get_soc_to_chipset_map), default SM8650
QNN_NOT_FOUND = "QNN SDK not found (set QNN_SDK_ROOT)"


@dataclass(frozen=True)
class ModeSupport:
    """What one sam3m4 quant mode becomes on one backend."""

    supported: bool
    """True when the mode lowers to this backend (export is attempted); False -> reported, never attempted."""
    gets: str
    """What the backend receives: weight and activation precision of Linear / token table / convs."""
    reason: str = ""
    """Why the mode is unsupported (empty when supported)."""
    pt2e: str | None = None
    """PT2E scheme the flow applies at export from the float student (QNN ``QuantDtype`` name without
    ``use_``), or None when the model's torchao weights go to the backend as they are."""


@dataclass(frozen=True)
class Flow:
    """One ExecuTorch backend: what it needs, how to partition for it, what each quant mode becomes."""

    name: str
    """``coreml``, ``qnn`` or ``xnnpack``: the ``backend`` argument of :func:`sam3m4.export.export.export_pte`."""
    backend_id: str
    """``backend_id`` of the ``lowered_module_*`` this flow produces (``CoreMLBackend``, ``QnnBackend``,
    ``XnnpackBackend``); ops inside such modules count as delegated."""
    is_npu: bool
    """True for NPU backends (Core ML CPU_AND_NE, QNN HTP): their coverage is the ``npu_percent`` gate.
    XNNPACK is a CPU backend: its share is reported as CPU delegation, never as NPU coverage."""
    needs: str
    """What the toolchain needs at export time, and where the ``.pte`` runs."""
    host_platforms: tuple[str, ...]
    """``sys.platform`` values of hosts that can execute the ``.pte`` here: XNNPACK any; Core ML ``darwin`` (the
    macOS pip runtime has the backend; UNTESTED on this project's Linux hosts); QNN none (a phone)."""
    platform: str
    """The phone platform whose ExecuTorch benchmark app measures the ``.pte`` (``ios`` or ``android``): the first
    part of the on-device subject ``<platform>/<backend>/<mode>`` (:func:`sam3m4.results.schema.device_subject`)."""
    executes: str
    """Where the ``.pte`` executes, as a clause (``Core ML executes only on macOS/iOS``): the reason given when
    this host cannot run it, and in the "not measured on a phone here" records."""
    modes: dict[str, ModeSupport]
    """Quant mode name -> :class:`ModeSupport`, one entry per :data:`sam3m4.quantize.modes.MODES`."""
    check: Callable[[], tuple[bool, str]] = field(repr=False)
    """() -> (available, reason); never raises, never imports a toolchain that downloads things."""
    make_partitioners: Callable[[str], list] = field(repr=False)
    """mode -> list of ExecuTorch partitioners (imports the backend; call after ``available()``)."""
    quantize: Callable | None = field(default=None, repr=False)
    """(module, example_inputs, mode, calibration) -> PT2E-quantized ``GraphModule``, for flows with ``pt2e``."""
    quantize_convs: Callable | None = field(default=None, repr=False)
    """(module, example_inputs, mode, calibration) -> module whose convolutions the backend gets quantized, for
    modes with ``Mode.convs`` of this backend (XNNPACK: PT2E ``XNNPACKQuantizer``, static activations calibrated
    on ``calibration``, input tuples or None); None: the backend does it at lowering (Core ML's compile spec) or
    quantizes everything itself (QNN)."""
    quantizer_settings: QuantizerSettings | None = None
    """The settings this backend's own quantizer gets (:mod:`sam3m4.quantize.backends`): Core ML's
    ``op_linear_quantizer_config``, XNNPACK's conv quantizer config, QNN's ``set_default_quant_config`` options."""
    int8_row_table: bool = False
    """True: a 4-bit token table left on the CPU is exported as int8 rows + scales (:mod:`.token_table`) so the
    stock ExecuTorch kernels run it; False: the backend takes torchao's dequantize itself (Core ML)."""
    has_compute_plan: bool = False
    """True: coremltools' MLComputePlan can say which ops of the ``.pte`` prefer the NPU (Core ML's ANE share,
    ``ane_percent``; measured on macOS 14.4+ only)."""

    @property
    def marker(self) -> str:
        """``<name>: <description>``: the pytest marker of tests that need this flow (``conftest.py`` registers
        one per flow of :data:`FLOWS`; ``pytest -m <name>`` selects them)."""
        return f"{self.name}: needs the {self.name} export flow ({self.needs})"

    @property
    def processor(self) -> str:
        """``NPU`` or ``CPU``: what the flow targets (the NPU-coverage gate applies to ``NPU`` flows only)."""
        return "NPU" if self.is_npu else "CPU"

    def runs_here(self) -> bool:
        """True when this host can execute the flow's ``.pte`` (then it is checked against eager and timed)."""
        return sys.platform in self.host_platforms

    def cannot_run_here(self) -> str | None:
        """Why this host cannot execute the flow's ``.pte``, or None when it can (:meth:`runs_here`)."""
        return None if self.runs_here() else f"{self.executes} (this host: {sys.platform})"

    def available(self) -> tuple[bool, str]:
        """(True, note) when the toolchain is importable here, else (False, reason)."""
        return self.check()

    def support(self, mode: str) -> ModeSupport:
        if mode not in self.modes:
            raise ConfigError(f"--mode {mode!r}: unknown; choices: {', '.join(self.modes)}")
        return self.modes[mode]

    def partitioners(self, mode: str) -> list:
        return self.make_partitioners(mode)


# --- XNNPACK (CPU) -------------------------------------------------------------------------------------------
def _xnnpack_check() -> tuple[bool, str]:
    try:
        import executorch.backends.xnnpack.partition.xnnpack_partitioner  # noqa: F401
    except Exception as err:  # noqa: BLE001  (any import failure means: not here)
        return False, f"executorch XNNPACK partitioner not importable ({type(err).__name__}: {err})"
    return True, "lowers and runs here (host CPU)"


def _xnnpack_partitioners(mode: str) -> list:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return [XnnpackPartitioner()]


_XNN_WEIGHT_ONLY = ("XNNPACK does not lower weight-only int4 (ExecuTorch docs; on the tiny student: \"An error "
                    "occurred when running the 'ConvertToLinearPass' pass after the following passes: []\", from "
                    "\"t() expects a tensor with <= 2 dimensions, but self is 3D\"): use int8_int4 on XNNPACK")
def _xnnpack_quantize_convs(module, example_inputs: tuple, mode: str, calibration=None):
    """PT2E ``XNNPACKQuantizer`` on the convolutions of an exported method (settings:
    :data:`sam3m4.quantize.xnnpack_int8.XNNPACK_INT8`: 8-bit per-channel weights, 8-bit static activations
    calibrated on ``calibration``, input tuples of the method: Stage 4's val images; without it the example inputs
    once); the torchao Linear / token-table ops pass through untouched."""

    return pt2e_convs(module, example_inputs, dynamic=XNNPACK.quantizer_settings.config["is_dynamic"],
                      calibration=calibration)


_XNN_8DA4W = ("Linear: 8-bit dynamic per-token activations + 8-bit weights per output channel (XNNPACK qd8-f32-qc8w "
              "GEMM); token table 4-bit values stored as int8 rows + group scales, looked up on portable CPU ops; "
              "convs, depthwise included: 8-bit per-channel weights + 8-bit static activations calibrated on val "
              "images (PT2E XNNPACKQuantizer, sam3m4.quantize.xnnpack_int8); attention matmuls, softmax and norms "
              "fp32")
XNNPACK = Flow(
    name="xnnpack", backend_id="XnnpackBackend", is_npu=False,
    needs="executorch with the XNNPACK backend (pip); runs on any ARM/x86 CPU, this host included",
    host_platforms=("linux", "darwin", "win32"), platform="android",
    executes="XNNPACK executes on any ARM/x86 CPU",
    modes={
        "fp16": ModeSupport(True, "fp32 program with fp16-rounded weights (XNNPACK computes fp32 here; the .pte "
                                  "stores weights as fp32, twice the fp16 bytes)"),
        "int4": ModeSupport(False, "Linear 4-bit weight-only", reason=_XNN_WEIGHT_ONLY),
        "int8_int4": ModeSupport(True, _XNN_8DA4W),
        "qat_int4": ModeSupport(False, "Linear 4-bit weight-only (after QAT)", reason=_XNN_WEIGHT_ONLY),
        "qat_int8_int4": ModeSupport(True, _XNN_8DA4W + " (after QAT)"),
    },
    check=_xnnpack_check, make_partitioners=_xnnpack_partitioners, quantize_convs=_xnnpack_quantize_convs,
    quantizer_settings=XNNPACK_QUANTIZER, int8_row_table=True)


# --- Core ML (Apple Neural Engine) ---------------------------------------------------------------------------
def _coreml_check() -> tuple[bool, str]:
    try:
        import coremltools  # noqa: F401
        import executorch.backends.apple.coreml.partition  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return False, f"coremltools / executorch Core ML backend not importable ({type(err).__name__}: {err})"
    return True, "lowers here; the .pte runs only on macOS / iOS (Apple hardware)"


def _coreml_partitioners(mode: str) -> list:
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner


    # int4 modes: coremltools compresses every weight still float after torchao (the convolutions) at lowering
    settings = COREML.quantizer_settings
    weights = dict(settings.config) if MODES[mode].convs == settings.convs else None
    specs = CoreMLBackend.generate_compile_specs(minimum_deployment_target=ct.target.iOS18,
                                                 compute_unit=ct.ComputeUnit.CPU_AND_NE,
                                                 compute_precision=ct.precision.FLOAT16,
                                                 op_linear_quantizer_config=weights)
    return [CoreMLPartitioner(compile_specs=specs)]


_CML_INT4 = ("Linear + token table 4-bit weight-only per group of 32 (Core ML blockwise constexpr, iOS 18); "
             "convs 4-bit weights per block of 16 input channels (coremltools linear_quantize_weights at lowering; "
             "convs with fewer than 2049 weights or a width not divisible by 16 stay fp16); activations fp16")
_CML_DYNAMIC = ("Core ML has no dynamic activation quantization (int8_int4 is 8-bit dynamic activations + "
                "4-bit weights): use int4 on Core ML")
COREML = Flow(
    name="coreml", backend_id="CoreMLBackend", is_npu=True,
    needs="coremltools + executorch Core ML backend (pip, Linux or macOS) to lower; macOS / iOS 18+ to run "
          "(CPU_AND_NE: Neural Engine with CPU fallback, fp16)",
    host_platforms=("darwin",), platform="ios", executes="Core ML executes only on macOS/iOS",
    modes={
        "fp16": ModeSupport(True, "fp16 weights and activations (compute_precision FLOAT16)"),
        "int4": ModeSupport(True, _CML_INT4),
        "int8_int4": ModeSupport(False, "Linear 8-bit dynamic activations + 4-bit weights", reason=_CML_DYNAMIC),
        "qat_int4": ModeSupport(True, _CML_INT4 + " (after QAT)"),
        "qat_int8_int4": ModeSupport(False, "8-bit dynamic activations + 4-bit weights (after QAT)",
                                     reason=_CML_DYNAMIC),
    },
    check=_coreml_check, make_partitioners=_coreml_partitioners, quantizer_settings=COREML_QUANTIZER,
    has_compute_plan=True)


# --- QNN (Qualcomm HTP). UNTESTED HERE: no QNN SDK on this host ---------------------------------------------
def _qnn_check() -> tuple[bool, str]:
    root = os.environ.get("QNN_SDK_ROOT", "")
    if not root or not os.path.isdir(root):  # checked BEFORE any executorch.backends.qualcomm import
        return False, QNN_NOT_FOUND
    try:
        import executorch.backends.qualcomm.partition.qnn_partitioner  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return False, f"QNN_SDK_ROOT={root} but the executorch Qualcomm backend failed to import " \
                      f"({type(err).__name__}: {err})"
    return True, f"QNN SDK at {root}; the .pte runs on a Snapdragon phone (HTP)"


def _qnn_partitioners(mode: str) -> list:  # untested here
    from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec, generate_qnn_executorch_compiler_spec, get_soc_to_chipset_map)

    soc = os.environ.get(QNN_SOC_ENV, "SM8650")
    chips = get_soc_to_chipset_map()
    if soc not in chips:
        raise ConfigError(f"{QNN_SOC_ENV}={soc!r}: unknown Snapdragon; choices: {', '.join(chips)}")
    options = generate_htp_compiler_spec(use_fp16=QNN.support(mode).pt2e is None)
    return [QnnPartitioner(generate_qnn_executorch_compiler_spec(soc_model=chips[soc], backend_options=options))]


def _qnn_quantize(module, example_inputs: tuple, mode: str, calibration=None):  # untested here
    """PT2E: export the float module, annotate with QnnQuantizer, calibrate, convert -> GraphModule.

    ``calibration`` is an iterable of input tuples (real frames + phrases); without it the example inputs are
    used once, which only makes the program well-formed (not accurate)."""
    import torch
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = QnnQuantizer()
    quantizer.set_default_quant_config(getattr(QuantDtype, f"use_{QNN.support(mode).pt2e}"),
                                       **QNN.quantizer_settings.config)
    prepared = prepare_pt2e(torch.export.export(module, example_inputs).module(), quantizer)
    with torch.no_grad():
        for inputs in calibration or [example_inputs]:
            prepared(*inputs)
    return convert_pt2e(prepared)


_QNN_FROM_FLOAT = ("; PT2E QnnQuantizer from the float (fp16-mode) student, not the torchao weights; convs, Linear "
                   "and activations all quantized (per-channel conv/Linear weights)")
QNN = Flow(
    name="qnn", backend_id="QnnBackend", is_npu=True,
    needs="Qualcomm QNN SDK at export time (QNN_SDK_ROOT; not on PyPI), a Snapdragon phone to run (HTP)",
    host_platforms=(), platform="android", executes="QNN HTP executes only on a Snapdragon device",
    modes={
        "fp16": ModeSupport(True, "fp16 on HTP (use_fp16=True, no quantizer)"),
        "int4": ModeSupport(True, "16-bit activations + 4-bit weights (16a4w)" + _QNN_FROM_FLOAT, pt2e="16a4w"),
        "int8_int4": ModeSupport(True, "8-bit activations + 4-bit weights (8a4w)" + _QNN_FROM_FLOAT, pt2e="8a4w"),
        "qat_int4": ModeSupport(True, "16a4w PTQ (torchao QAT weights do not carry over)" + _QNN_FROM_FLOAT,
                                pt2e="16a4w"),
        "qat_int8_int4": ModeSupport(True, "8a4w PTQ (torchao QAT weights do not carry over)" + _QNN_FROM_FLOAT,
                                     pt2e="8a4w"),
    },
    check=_qnn_check, make_partitioners=_qnn_partitioners, quantize=_qnn_quantize, quantizer_settings=QNN_QUANTIZER)


FLOWS: dict[str, Flow] = {f.name: f for f in (COREML, QNN, XNNPACK)}
assert all(set(f.modes) == set(MODES) for f in FLOWS.values()), "every flow maps every quant mode"
assert all(f.quantizer_settings.backend == n for n, f in FLOWS.items()), "each flow declares its own quantizer"
assert {n: tuple(m for m, s in f.modes.items() if s.supported) for n, f in FLOWS.items()} == BACKEND_MODES, \
    "sam3m4.quantize.decision.BACKEND_MODES (what Stage 4 decides among) must be the flows' supported modes"


def get_flow(name: str) -> Flow:
    if name not in FLOWS:
        raise ConfigError(f"--backend {name!r}: unknown; choices: {', '.join(FLOWS)}")
    return FLOWS[name]
