"""Per-operator numeric gaps of an XNNPACK program against eager, with ExecuTorch's devtools (ETRecord, ETDump,
Inspector), so a deployed-accuracy failure points at the layer that broke.

    gaps = op_gaps(student, mode="int8_int4", inputs={"forward": case_inputs, "encode_text": ...},
                   out_dir="outputs/export/sam3m4_tiny_xnnpack_int8_int4.devtools")
    gaps.methods["forward"].rows[0].ops, .snr_db, .introduced_db, .max_abs_error
    gaps.save("outputs/export/sam3m4_tiny_xnnpack_int8_int4.op_gaps.json")

How (per method, one real val input):

1. the method is exported as Stage 5 exports it (:func:`~sam3m4.export.export.exported_programs`: same conv
   quantizer, same token table) and lowered with ``to_edge_transform_and_lower(..., generate_etrecord=True)``
   into a debug program whose only method is ``forward``, then ``to_executorch`` -> ETRecord (ATen + edge
   graphs with debug handles, and the input as its representative input);
2. the ExecuTorch runtime runs it with an ETDump and a debug buffer
   (``_load_for_executorch(..., enable_etdump=True, debug_buffer_size=...)``, ``write_etdump_result_to_file``);
3. ``Inspector(etdump, etrecord, debug_buffer).calculate_numeric_gap("SNR")`` runs the ETRecord's ATen graph
   in eager on the same input and pairs each runtime output with the eager ops it covers.

What ExecuTorch 1.5.1 can and cannot do here (seen on this host):

* the Inspector reads one method named ``forward``: a multi-method ETRecord fails in
  ``gen_graphs_from_etrecord`` (``'dict' object has no attribute 'graph_module'``), so each method is lowered
  again on its own;
* the XNNPACK delegate logs its outputs only at the delegate boundary: one row per delegate call, covering all
  the ops fused into it. The shipped partitioning fuses most of a method into a few delegates, so by default the
  debug program is lowered with ``XnnpackPartitioner(per_op_mode=True)`` (the same XNNPACK kernels, one delegate
  per op or fused op group): one row per operator. ``per_op=False`` gives the shipped granularity (per delegate);
* the numbers are for the debug program, not the shipped ``.pte`` bytes: same graph, kernels and weights, but a
  different delegate layout (XNNPACK may fuse differently across ops).

Each row: the eager ops it covers (``aot_ops``), SNR in dB (10 log10 of signal / error power; higher is
closer), max abs error and the eager output's max |x|; ``introduced_db`` is how far the row's SNR falls below
the lowest SNR of every earlier row in execution order (0 when it does not): errors propagate downstream, so
the layer that broke is the first big fall, not merely a low SNR. Rows are ranked by ``introduced_db``, then SNR.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sam3m4.export.export import exported_programs
from sam3m4.fileio import atomic_write_json

TOP = 10
"""Rows kept per method."""
DEBUG_BUFFER_BYTES = 256 << 20
"""Debug buffer for the intermediate outputs of one run (the tiny student's forward needs ~30 MB per op mode)."""


@dataclass
class GapRow:
    """One runtime output (an operator, or a delegate call) against the eager ops it covers."""

    order: int
    """Position in execution order (0 first)."""
    ops: list[str]
    """Eager (ATen graph) node names it covers, e.g. ``["conv2d_3", "relu_2"]``."""
    runtime_ops: list[str]
    """What the runtime logged (``DELEGATE_CALL``, ``native_call_add.out`` ...)."""
    snr_db: float | None
    """SNR of the runtime output vs eager in dB (None: not finite, e.g. an all-zero eager output)."""
    max_abs_error: float
    ref_max_abs: float
    introduced_db: float
    """dB this row's SNR falls below the lowest SNR of every earlier row (0 when it does not)."""
    source: str = ""
    """Innermost sam3m4 source line of the first op (``sam3m4/models/decoder.py:88``), when the graph kept one."""


@dataclass
class MethodGaps:
    method: str
    rows: list[GapRow] = field(default_factory=list)
    """The :data:`TOP` rows by ``introduced_db`` then SNR."""
    compared: int = 0
    """Runtime outputs paired with eager ops."""
    worst_snr_db: float | None = None
    error: str | None = None
    """Why there are no rows (the step that failed), else None."""


@dataclass
class OpGaps:
    backend: str
    mode: str
    granularity: str
    """``per operator (XnnpackPartitioner per_op_mode)`` or ``per delegate (shipped partitioning)``."""
    methods: dict[str, MethodGaps] = field(default_factory=dict)
    seconds: float = 0.0
    inputs: dict[str, str] = field(default_factory=dict)
    """Method -> which val input ran."""

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)


def _source(stack: dict | None) -> str:
    """``sam3m4/...py:LINE`` of the innermost sam3m4 frame of the first op's stack trace, else ``""``."""
    for trace in (stack or {}).values():
        lines = [ln.strip() for ln in (trace or "").splitlines() if 'File "' in ln and "sam3m4" in ln]
        if lines:
            path, _, rest = lines[-1].partition('File "')[2].partition('"')
            line = rest.split("line ")[1].split(",")[0] if "line " in rest else "?"
            return f"sam3m4{path.split('sam3m4', 1)[1]}:{line}"
    return ""


def _flat(x) -> torch.Tensor:
    if isinstance(x, (list, tuple)):
        parts = [_flat(v) for v in x if v is not None]
        return torch.cat([p.flatten() for p in parts]) if parts else torch.zeros(0)
    return torch.as_tensor(x).detach().float().flatten()


def rows_from_frame(df) -> list[GapRow]:
    """:meth:`Inspector.calculate_numeric_gap` rows (SNR) -> :class:`GapRow` in execution order."""
    rows = []
    frame = df.sort_values("runtime_debug_handle", key=lambda s: s.map(lambda h: min(h) if len(h) else 0))
    for i, (_, r) in enumerate(frame.iterrows()):
        gap = r["gap"][0] if isinstance(r["gap"], (list, tuple)) else r["gap"]
        a, b = _flat(r["aot_intermediate_output"]), _flat(r["runtime_intermediate_output"])
        n = min(len(a), len(b))
        err = float((a[:n] - b[:n]).abs().max()) if n else float("nan")
        rows.append(GapRow(order=i, ops=list(r["aot_ops"]), runtime_ops=list(r["runtime_ops"]),
                           snr_db=float(gap) if gap is not None and math.isfinite(float(gap)) else None,
                           max_abs_error=err, ref_max_abs=float(a.abs().max()) if len(a) else 0.0,
                           introduced_db=0.0, source=_source(r.get("stacktraces"))))
    lowest = math.inf
    for row in rows:
        if row.snr_db is not None:
            row.introduced_db = max(0.0, lowest - row.snr_db) if math.isfinite(lowest) else 0.0
            lowest = min(lowest, row.snr_db)
    return rows


def rank(rows: list[GapRow], top: int = TOP) -> list[GapRow]:
    """The ``top`` rows by ``introduced_db`` (descending), then SNR (ascending; None last)."""
    return sorted(rows, key=lambda r: (-r.introduced_db, r.snr_db if r.snr_db is not None else math.inf))[:top]


def debug_program(exported, *, per_op: bool = True):
    """An ExportedProgram -> (``ExecutorchProgramManager`` with one method ``forward`` lowered to XNNPACK, its
    ETRecord). ``per_op``: one delegate per operator (``XnnpackPartitioner(per_op_mode=True)``)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner(per_op_mode=per_op)],
                                       generate_etrecord=True)
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=True))
    return program, program.get_etrecord()


def numeric_gaps(program_bytes: bytes, etrecord, inputs, workdir: str | Path,
                 debug_buffer_bytes: int = DEBUG_BUFFER_BYTES) -> list[GapRow]:
    """Run ``program_bytes`` (a one-method ``forward`` program) on ``inputs`` with an ETDump and debug buffer
    and compare every runtime output with eager through the Inspector -> rows in execution order.

    ``etrecord``: the ETRecord of the program the eager side comes from (normally the same lowering; a test may
    pair a modified program with the clean ETRecord). Files ``debug.pte``, ``run.etdump``, ``debug.bin`` and
    ``program.etrecord`` are written under ``workdir``."""
    import warnings

    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    pte, etdump, debug, record = (work / n for n in ("debug.pte", "run.etdump", "debug.bin", "program.etrecord"))
    pte.write_bytes(program_bytes)
    module = portable_lib._load_for_executorch(str(pte), enable_etdump=True, debug_buffer_size=debug_buffer_bytes)
    module.run_method("forward", [t.contiguous() for t in inputs])
    module.write_etdump_result_to_file(str(etdump), str(debug))
    etrecord.update_representative_inputs([list(inputs)])
    etrecord.save(str(record))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "buffer is not writable" from the Inspector's torch.frombuffer
        inspector = Inspector(etdump_path=str(etdump), etrecord=str(record), debug_buffer_path=str(debug))
        frame = inspector.calculate_numeric_gap("SNR")
    return rows_from_frame(frame)


def op_gaps(model, *, backend: str = "xnnpack", mode: str, inputs: dict, out_dir: str | Path, tracker=None,
            per_op: bool = True, top: int = TOP, sources: dict | None = None) -> OpGaps:
    """Per-method numeric gaps of ``model`` (in ``mode``) lowered to XNNPACK, on one input per method.

    ``inputs``: {method: input tuple} (a real val case each: :func:`sam3m4.export.bundle.bundle_cases`);
    ``out_dir``: the ETRecord, ETDump and debug buffer of each method go to ``<out_dir>/<method>/``.
    A method that fails keeps its error in :attr:`MethodGaps.error`; nothing raises for it."""
    if backend != "xnnpack":
        raise ValueError(f"op gaps: backend {backend!r}: only xnnpack programs run on this host's runtime")
    t0 = time.perf_counter()
    result = OpGaps(backend, mode, "per operator (XnnpackPartitioner per_op_mode)" if per_op else
                    "per delegate (shipped partitioning)", inputs=dict(sources or {}))
    for method, case in inputs.items():
        gaps = MethodGaps(method)
        step = "export"
        try:
            exported = exported_programs(model, backend=backend, mode=mode, methods=[method], tracker=tracker)[method]
            step = "lower"
            program, etrecord = debug_program(exported, per_op=per_op)
            step = "run + Inspector"
            with tempfile.TemporaryDirectory() if out_dir is None else _nullpath(Path(out_dir) / method) as work:
                rows = numeric_gaps(program.buffer, etrecord, case, work)
            snrs = [r.snr_db for r in rows if r.snr_db is not None]
            gaps.rows, gaps.compared = rank(rows, top), len(rows)
            gaps.worst_snr_db = min(snrs) if snrs else None
        except Exception as err:  # noqa: BLE001  (recorded, shown in the report)
            gaps.error = f"{step}: {type(err).__name__}: {err}"[:600]
        result.methods[method] = gaps
    result.seconds = time.perf_counter() - t0
    return result


class _nullpath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        return None
