"""One Stage 5 case end to end: load the quantized model, export one ``.pte``, measure what this host can, record.

    from sam3m4.export.case import export_case
    from sam3m4.results import ResultsStore
    r = export_case("xnnpack", "int8_int4", quantized="checkpoints/quantized", out_dir="outputs/export",
                    store=ResultsStore("demo"))
    r.ok, r.path, r.size_bytes, r.coverage, r.host_image_latency_ms, r.exit_code, [x.metric for x in r.records]

What ``sam3m4 export`` does (:mod:`sam3m4.export.cli` only parses its flags and calls :func:`export_case`), and
what the Stage 5 acceptance fixture calls. Reads the quantized model ``sam3m4 quantize`` saved under
``<quantized>/<mode>/`` (a tracker's folder also gives the ``track`` method), or quantizes a checkpoint here
(``ckpt``), and writes ``<out_dir>/<name>_<backend>_<mode>.pte``. Records (stage ``stage5``, subject
``<backend>/<mode>``): ``export_ok``, ``pte_mb``, ``npu_percent`` (Core ML / QNN; XNNPACK:
``cpu_delegation_percent``) with the non-delegated ops in the note; for a flow that runs here (XNNPACK; Core ML
on a Mac, untested on this project's Linux hosts) also the numerics against eager (``mask_iou``,
``max_abs_error``) and the host latency (``host_image_latency_ms`` p50, ``host_image_latency_p90_ms``,
``host_video_fps``), and the deployed accuracy of the ``.pte`` on Stage 4's val pairs (:mod:`.accuracy`:
``miou``, ``presence_f1``, SA-Co ``saco_cgf1`` / ``saco_il_mcc``, ``jf``, ``deployed_miou_drop``,
``export_miou_gap``); the agreement with eager (``mask_iou/forward``) is measured on val pairs where eager keeps
a query. ``mode="chosen"`` exports Stage 4's decision for the backend (``<quantized>/decision.json``,
:mod:`sam3m4.quantize.decision`); ``shipped`` records why the case was exported (``decision`` or ``extra``).
On-device latency and FPS come from ``sam3m4 device import``; an NPU flow's phone numbers
get a "not measured" record with the reason. A failed export is recorded with the stage where it failed.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sam3m4.checkpoint import Checkpoint
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.export import ane, runtime, verification
from sam3m4.export.accuracy import CaseScorer, ValPairs, export_calibration, load_pairs
from sam3m4.export.bundle import K_DEFAULT, bundle_writer
from sam3m4.export.export import ExportResult, export_pte, records
from sam3m4.export.flows import get_flow
from sam3m4.export.program import ExportedProgram
from sam3m4.export.token_table import VOCAB, Vocabulary, restricted_token_table
from sam3m4.paths import EXPORT_DIR, QUANTIZED_DIR
from sam3m4.quantize.decision import DECISION_FILE, read_decision
from sam3m4.quantize.pipeline import build_mode, image_model
from sam3m4.quantize.convs import PT2EStudent, pt2e_convs
from sam3m4.quantize.modes import get_mode
from sam3m4.quantize.storage import QuantizedSet, load_quantized
from sam3m4.results import ResultsStore, schema
from sam3m4.results.store import NOT_MEASURABLE, Record

CHOSEN = "chosen"
"""``--mode chosen``: the mode Stage 4 decided for the backend (``<quantized>/decision.json``)."""


@dataclass(frozen=True)
class ExportCaseResult:
    """What :func:`export_case` did for one ``backend/mode`` case."""

    backend: str
    """Flow name (``coreml``, ``qnn``, ``xnnpack``)."""
    mode: str
    """sam3m4 quant mode (``fp16``, ``int4``, ``int8_int4``, ``qat_int4``, ``qat_int8_int4``)."""
    export: ExportResult
    """The export itself: ``.pte`` path(s), size, delegation per method, or the stage where it stopped."""
    measured: bool | None
    """True: checked against eager and timed on this host; False: the ``.pte`` failed to load or run here;
    None: not attempted (the flow does not run here, or the export failed)."""
    records: tuple[Record, ...]
    """Every record written to the results store, in order."""
    vocabulary: Path | None = None
    """``<pte stem>.vocab.json`` (CLIP id -> row, what the app's tokenizer maps through) when the token table was
    restricted to a deployment's phrases; None: the full CLIP table."""
    deployed: object = None
    """The :class:`~sam3m4.export.deployed.DeployedEval` of the ``.pte`` on the val pairs (None: not scored)."""

    @property
    def subject(self) -> str:
        return schema.export_subject(self.backend, self.mode)

    @property
    def ok(self) -> bool:
        """The ``.pte`` was written."""
        return self.export.ok

    @property
    def path(self) -> Path | None:
        return self.export.path

    @property
    def program(self) -> ExportedProgram | None:
        """The ``.pte`` (path, sha256, backend, mode, methods) as the next stage takes it; None when not written."""
        return self.export.program

    @property
    def size_bytes(self) -> int | None:
        return self.export.size_bytes

    @property
    def coverage(self) -> float | None:
        """Delegated / all compute ops in [0, 1]: NPU coverage for an NPU flow, CPU delegation for XNNPACK."""
        return self.export.coverage

    def value(self, metric: str):
        """The last value recorded for ``metric`` in this case (None when not recorded or not measured)."""
        found = [r for r in self.records if r.metric == metric]
        return found[-1].value if found else None

    @property
    def host_image_latency_ms(self) -> float | None:
        return self.value(schema.HOST_IMAGE_LATENCY_MS)

    @property
    def host_video_fps(self) -> float | None:
        return self.value(schema.HOST_VIDEO_FPS)

    @property
    def exit_code(self) -> int:
        """``sam3m4 export``'s exit status: 0 when exported (and measured where it runs) or unsupported, else 1."""
        if not self.ok:
            return 0 if self.export.unsupported else 1
        return 0 if self.measured is not False else 1


def check_case(backend: str, mode: str, *, quantized: QuantizedSet | str | Path | None,
               ckpt: Checkpoint | str | Path | None, out_dir: str | Path, name: str | None, runs: int,
               vocabulary: str | Path | None = None) -> None:
    """Arguments checked before anything loads or lowers: one line naming the ``sam3m4 export`` flag (a bad
    ``vocabulary`` file: naming the file and its field)."""
    get_flow(backend).support(mode)  # unknown backend / mode -> ConfigError naming --backend / --mode
    out = Path(out_dir)
    if runs < 1:
        raise ConfigError(f"--runs {runs}: must be >= 1")
    if name is not None and (not name.strip() or Path(name).name != name):
        raise ConfigError(f"--name {name!r}: must be a plain file name part (no folders)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if vocabulary is not None and not Path(vocabulary).is_file():
        raise ConfigError(f"--vocabulary {vocabulary}: no such file (one noun phrase per line, or a .vocab.json)")
    if ckpt:
        if not Path(ckpt).is_file():
            raise ConfigError(f"--ckpt {ckpt}: no such checkpoint file")
    elif not (Path(quantized) / mode).is_dir():
        quantized = Path(quantized)
        where = "no such folder" if not quantized.is_dir() else f"has no {mode}/ folder"
        raise ConfigError(f"--quantized {quantized}: {where} (make it with `sam3m4 quantize --mode "
                          f"{mode} --out {quantized}`, or pass --ckpt)")


def load_case_model(mode: str, quantized: QuantizedSet | str | Path | None, ckpt: Checkpoint | str | Path | None):
    """(student, tracker or None, metadata) in ``mode``: from ``<quantized>/<mode>/`` (a
    :class:`~sam3m4.quantize.storage.QuantizedSet`: its model, loaded once) or quantized from ``ckpt`` (an opened
    :class:`~sam3m4.checkpoint.Checkpoint`, or a path read once)."""
    if ckpt:
        model, _ = build_mode(ckpt, mode)
        meta = {"preset": image_model(model).preset, "kind": "tracker" if hasattr(model, "memory") else "student"}
    elif isinstance(quantized, QuantizedSet):
        model, meta = quantized[mode].load(), quantized[mode].meta
    else:
        folder = Path(quantized) / mode
        model, meta = load_quantized(folder)
        if meta["mode"] != mode:  # a folder copied or renamed by hand: the file name would lie
            raise DataFormatError(f"{folder / 'quantized.json'}: mode: {meta['mode']!r}, but --mode is {mode!r}")
    tracker = model if meta.get("kind") == "tracker" else None
    return (model.student if tracker is not None else model), tracker, meta


def export_case(backend: str, mode: str, *, quantized: QuantizedSet | str | Path | None = QUANTIZED_DIR,
                ckpt: Checkpoint | str | Path | None = None, out_dir: str | Path = EXPORT_DIR, name: str | None = None,
                runs: int = 50, vocabulary: str | Path | None = None, num_val: int = 200,
                data: str | Path | None = None, pairs: ValPairs | None = None, deployed: bool = True,
                shipped: str | None = None, store: ResultsStore | None = None, run: str = "demo",
                echo: Callable[[str], None] | None = print, bundle_k: int = K_DEFAULT,
                op_gaps: bool = False) -> ExportCaseResult:
    """Export the quantized model of ``mode`` for ``backend``, measure it where this host can, record everything.

    ``quantized``: the ``sam3m4 quantize --out`` folder (one ``<mode>/`` per mode); ``ckpt`` instead: a Phase 2 or
    video checkpoint quantized here in ``mode``. ``mode`` ``"chosen"``: Stage 4's decision for ``backend`` from
    ``<quantized>/decision.json`` (then ``shipped`` defaults to ``decision``). ``name``: the model name in the file
    name (default ``sam3m4_<preset>``). ``runs``: timed host runs after 10 warm-up (flows that run here).
    ``vocabulary``: a deployment's phrase list (one per line) or a saved ``.vocab.json``: the token table keeps
    only the rows those phrases use (:mod:`.token_table`; 49408 rows are most of a small student's text encoder),
    the ``.pte`` is checked and timed with it, and ``<pte stem>.vocab.json`` is written next to the ``.pte`` for
    the app's tokenizer (:class:`~sam3m4.export.token_table.RestrictedTokenizer`). ``num_val`` / ``data``: the
    deployed accuracy of a ``.pte`` that runs here is scored on the first ``num_val`` val pairs of ``data``
    (default: the checkpoint's data root, as Stage 4); ``pairs`` gives them directly; ``deployed=False`` skips it.
    ``shipped``: ``decision`` or ``extra``, recorded as why the case was exported. ``bundle_k``: val cases per
    method in the verification bundle ``<pte stem>.bpte`` (0: none) and the source of the per-operator gaps
    (XNNPACK), both from the val pairs of ``data`` or of the checkpoint the quantized model came from
    (:mod:`.verification`). ``op_gaps``: XNNPACK only, also the per-operator gaps (:mod:`.op_gaps`; off by
    default: its per-operator lowering of the tiny student ran for minutes on a loaded 2-core host). ``store``: where the records
    go (default ``ResultsStore(run)``, i.e. ``reports/<run>/``). ``echo``: status lines (None: silent).
    Bad arguments raise :class:`~sam3m4.errors.ConfigError` before anything loads; a failed export or measurement
    does not raise: it is recorded and :attr:`ExportCaseResult.exit_code` says 1.
    """
    decision = None
    if mode == CHOSEN:
        if ckpt or quantized is None:
            raise ConfigError("--mode chosen: reads Stage 4's decision.json under --quantized (not with --ckpt)")
        decision = read_decision(Path(quantized) / DECISION_FILE)
        if backend not in decision.backends:
            raise DataFormatError(f"{decision.path}: backends.{backend}: missing (Stage 4 decided for "
                                  f"{', '.join(decision.backends) or 'no backend'})")
        mode, shipped = decision.backends[backend].mode, shipped or schema.SHIPPED_DECISION
    if shipped not in (None, schema.SHIPPED_DECISION, schema.SHIPPED_EXTRA):
        raise ConfigError(f"--shipped {shipped!r}: choose from {schema.SHIPPED_DECISION}, {schema.SHIPPED_EXTRA}")
    if shipped == schema.SHIPPED_DECISION:
        decision = decision or read_decision(Path(quantized or ".") / DECISION_FILE)
        d = decision.backends.get(backend)
        if d is None or d.mode != mode:
            raise ConfigError(f"--shipped decision: {decision.path} chose {d.mode if d else 'nothing'} for {backend}, "
                              f"not {mode} (use --mode chosen, or --shipped extra)")
    if num_val < 1:
        raise ConfigError(f"--num-val {num_val}: must be >= 1")
    if data is not None and not Path(data).is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    check_case(backend, mode, quantized=quantized, ckpt=ckpt, out_dir=out_dir, name=name, runs=runs,
               vocabulary=vocabulary)
    if bundle_k < 0:
        raise ConfigError(f"--bundle-k {bundle_k}: must be >= 0")
    if data is not None and not (Path(data) / "saco_image" / "val.json").is_file():
        raise ConfigError(f"--data {data}: no saco_image/val.json under it")
    vocab = Vocabulary.from_file(vocabulary) if vocabulary is not None else None
    ckpt = Checkpoint.open(ckpt) if ckpt else None  # read once: the model, the val pairs and the bundle take it
    student, tracker, meta = load_case_model(mode, quantized, ckpt)
    store = store if store is not None else ResultsStore(run)
    if shipped is not None:
        _record_shipped(store, backend, mode, shipped, decision)
    source = ckpt or _source_checkpoint(meta.get("source"), data)  # the val pairs' data root: one read
    scorer = CaseScorer(student, tracker, mode, ckpt or Path(quantized), meta, source, data, num_val,
                     pairs, store) if deployed and vocab is None else None
    calibration = _calibration(backend, mode, student, tracker, scorer, meta, ckpt, data, num_val, pairs, echo)
    with restricted_token_table(student, vocab) if vocab is not None else nullcontext():  # the tracker's too
        refs = functools.cache(lambda: converted_references(student, tracker, scorer, calibration)) \
            if calibration else None  # built once, for the bundle and the host check
        cases, why = verification.val_cases(student, tracker, source=source, data=data, k=bundle_k, vocab=vocab,
                                            references=refs) if bundle_k else (None, "--bundle-k 0")
        return _export_case(backend, mode, student, tracker, Path(out_dir), name or f"sam3m4_{meta['preset']}",
                            runs, vocab, store, echo, scorer, (cases, why), op_gaps, calibration, refs)


def _calibration(backend: str, mode: str, student, tracker, scorer, meta: dict, ckpt, data, num_val: int,
                 pairs: ValPairs | None, echo) -> dict | None:
    """Val-pair calibration of the flow's conv quantizer (XNNPACK integer modes: static int8 activations), on the
    pairs Stage 4 scored (:func:`.accuracy.export_calibration`); None for other cases, or when no val pairs can be
    found (then the example inputs calibrate once, and a line says so)."""
    flow = get_flow(backend)
    if flow.quantize_convs is None or get_mode(mode).convs is None or not flow.support(mode).supported:
        return None
    try:
        found = scorer.pairs() if scorer is not None else pairs or load_pairs(meta, ckpt, data, num_val)
    except Exception as err:  # noqa: BLE001  (no val data here: a well-formed but uncalibrated program)
        if echo is not None:
            echo(f"sam3m4 export: {backend}/{mode}: static int8 activations calibrated on the example inputs only "
                 f"(no val pairs: {err})")
        return None
    return export_calibration(student, tracker, found)


def converted_references(student, tracker, scorer, calibration: dict) -> dict:
    """``{"forward": module[, "track": module]}``: an XNNPACK static-int8 export's methods as PT2E-converted graphs
    calibrated on the program's own val pairs (``calibration``, :func:`_calibration`), i.e. what the program
    computes and Stage 4 scores; the verification bundle's expected outputs come from them (the eager student's
    float convolutions would not clip activations as the program's calibrated ranges do)."""
    eager = scorer.eager() if scorer is not None else None
    if not isinstance(eager, PT2EStudent):
        eager = PT2EStudent(student, calibration=calibration["forward"])
    refs = {"forward": eager.image_path}
    if tracker is not None and calibration.get("track"):
        refs["track"] = pt2e_convs(tracker, calibration["track"][0], calibration=calibration["track"])
    return refs


def _source_checkpoint(path: str | None, data) -> Checkpoint | str | None:
    """The checkpoint a quantized model came from, opened once when its data root gives the val pairs (``data``
    None); else ``path`` as given (a missing or unreadable file: the steps that need it record why)."""
    if data is not None or not path or not Path(path).is_file():
        return path
    try:
        return Checkpoint.open(path)
    except DataFormatError:
        return path


def _record_shipped(store: ResultsStore, backend: str, mode: str, shipped: str, decision) -> None:
    """The ``shipped`` record: Stage 4's decision (``decision.json`` as the artifact) or an extra config case."""
    subject = schema.export_subject(backend, mode)
    if shipped == schema.SHIPPED_DECISION:
        d = decision.backends[backend]
        store.record(stage=schema.STAGE5, subject=subject, metric=schema.SHIPPED, value=shipped, artifact=decision.path,
                     note=d.pte_name, provenance=f"Stage 4's decision for {backend} in {decision.path}")
    else:
        store.record(stage=schema.STAGE5, subject=subject, metric=schema.SHIPPED, value=shipped,
                     provenance="an extra case of the pipeline config (exports:), not Stage 4's decision")


def _export_case(backend: str, mode: str, student, tracker, out_dir: Path, name: str, runs: int,
                 vocab: Vocabulary | None, store: ResultsStore, echo: Callable[[str], None] | None,
                 scorer: CaseScorer | None = None, val: tuple = (None, "no val cases"),
                 op_gaps: bool = False, calibration: dict | None = None,
                 references: Callable | None = None) -> ExportCaseResult:
    """:func:`export_case` once the arguments are checked and the model is loaded (its token table restricted).
    ``val``: (bundle cases or None, why not) from :func:`.verification.val_cases`; ``calibration``: of
    :func:`export_pte`; ``references``: () -> :func:`converted_references` (XNNPACK static int8), or None."""
    say = echo or (lambda line: None)
    flow = get_flow(backend)
    cases, why = val
    bundles, bundle_errors = [], []
    result = export_pte(student, backend=backend, mode=mode, out_dir=out_dir, model_name=name, tracker=tracker,
                        calibration=calibration, on_program=bundle_writer(cases, bundles, bundle_errors) if cases else None)
    vocab_file = result.path.with_suffix(".vocab.json") if vocab is not None and result.ok else None
    if vocab is None and result.ok:  # an earlier restricted export's map would misread this full table
        result.path.with_suffix(".vocab.json").unlink(missing_ok=True)
    written: list[Record] = []

    def record(**kw) -> None:
        written.append(store.record(**kw))

    for kw in records(result):
        if not result.ok:
            why = "not attempted" if kw.get("outcome") else f"failed at {result.failed_stage}"
            kw["provenance"] = f"{kw['provenance']}; {why}: {result.error}"
        if kw["metric"] in (schema.NPU_PERCENT, schema.CPU_DELEGATION_PERCENT):
            missing = sorted({op for d in result.delegation.values() for op in d.non_delegated_ops})
            kw["note"] = "not delegated: " + (", ".join(missing) or "none")
        if kw["metric"] == schema.PTE_MB and vocab_file is not None:
            kw["provenance"] += (f"; token table restricted to {len(vocab.ids)} of {VOCAB} rows ({vocab.source}; "
                                 f"the app maps CLIP ids through {vocab_file.name})")
        record(**kw)
    subject = schema.export_subject(backend, mode)
    if not result.ok:
        say(f"sam3m4 export: {subject}: failed at {result.failed_stage}: {result.error}")
        return ExportCaseResult(backend, mode, result, None, tuple(written))
    if vocab_file is not None:
        vocab.save(vocab_file)
    cover = {m: f"{100 * d.coverage:.1f}%" for m, d in result.delegation.items()}
    say(f"{result.path}: {result.size_bytes / 1e6:.2f} MB, methods {', '.join(result.methods)} "
        f"({result.layout}), delegated {cover}, {result.seconds:.0f} s")
    if flow.has_compute_plan:
        record_ane_share(result, record, say)
    verification.record_bundles(result, flow, bundles, bundle_errors, why, record, say, run=store.run)
    if backend == "xnnpack" and op_gaps:
        verification.record_op_gaps(result, student, tracker, cases, record, say)
    measured, deployed = None, None
    if flow.runs_here():  # XNNPACK anywhere; Core ML on a Mac (UNTESTED here: Linux hosts)
        agree = (lambda: scorer.agreement(result)) if scorer is not None else None  # val pairs, not random inputs
        measured = measure_on_host(result, student, tracker, record, subject, runs, say, agreement=agree,
                                   reference=references)
        if measured and scorer is not None:
            deployed = scorer.score(result, record, say)
            measured = deployed is not False
    elif scorer is not None and vocab is None:
        for metric in (schema.DEPLOYED_MIOU_DROP, schema.EXPORT_MIOU_GAP, schema.PRESENCE_F1_GAP):
            record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, outcome=NOT_MEASURABLE,
                   artifact=result.path, note=f"not measured here: {flow.cannot_run_here()}; the .pte is scored "
                                              f"where it runs")
    if flow.is_npu:  # the phone numbers of an NPU flow come from `sam3m4 device import`
        for metric in (schema.IMAGE_LATENCY_MS, schema.VIDEO_FPS):
            record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, outcome=NOT_MEASURABLE,
                   note=f"not measured on a phone here: {flow.executes}; run the ExecuTorch benchmark app on a "
                        f"device and `sam3m4 device import`", artifact=result.path)
    return ExportCaseResult(backend, mode, result, measured, tuple(written), vocab_file,
                            deployed=deployed or None)


def measure_on_host(result: ExportResult, student, tracker, record: Callable, subject: str, runs: int,
                    echo: Callable[[str], None] = print, agreement: Callable | None = None,
                    reference: Callable | None = None) -> bool:
    """Numerics of the ``.pte`` against eager, and host latency, for a flow that runs here (:meth:`Flow.runs_here`).

    ``record``: ``ResultsStore.record`` or a callable taking the same keywords. True when measured. A ``.pte``
    that does not load or run here gets each metric not yet recorded (``mask_iou/forward``,
    ``host_image_latency_ms`` [, ``host_video_fps``]) recorded with no value and ``failed_stage`` ``load`` /
    ``run`` (the gates fail on it), and False is returned. ``agreement``: () -> :class:`~sam3m4.export.deployed.
    Agreement`, the ``forward`` mask IoU on val pairs where eager keeps a query (recorded as ``mask_iou/forward``
    instead of the seeded random inputs' one, on which eager keeps no query). ``reference``: () -> ``{method: module}``
    (:func:`converted_references`: an XNNPACK static-int8 program's ``forward`` / ``track`` as PT2E-converted graphs
    calibrated as the program was) for the eager side of those checks: their calibrated ranges clip the seeded
    random inputs as the program's do, the torchao student's float convolutions do not."""
    pending = [f"{schema.MASK_IOU}/forward", schema.HOST_IMAGE_LATENCY_MS] + (
        [schema.HOST_VIDEO_FPS] if tracker is not None else [])
    stage = "load"
    try:
        runtime.load_program(result.path)
        stage = "run"
        _measure_on_host(result, student, tracker, record, subject, runs, pending, echo, agreement, reference)
    except Exception as err:  # noqa: BLE001  (recorded where it stopped, then reported)
        error = f"{type(err).__name__}: {err}"[:800]
        for metric in pending:
            record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, failed_stage=stage,
                   note=f"the .pte failed to {stage} on this host: {error}", artifact=result.path)
        echo(f"sam3m4 export: {subject}: the .pte failed to {stage} on this host: {error}")
        return False
    return True


def _measure_on_host(result, student, tracker, record: Callable, subject: str, runs: int, pending: list[str],
                     echo: Callable[[str], None], agreement: Callable | None = None,
                     reference: Callable | None = None) -> None:
    """:func:`measure_on_host`'s measurements; each metric recorded is removed from ``pending``."""

    def put(**kw):
        record(stage=schema.STAGE5, subject=subject, artifact=result.path, **kw)
        if kw["metric"] in pending:
            pending.remove(kw["metric"])

    references = reference() if reference is not None else None
    checks = runtime.check_pte(result.path, student, tracker=tracker, references=references)
    if agreement is not None:
        agree = agreement()
        checks["forward"].mask_iou = agree.mask_iou
        if agree.mask_iou is None:
            put(metric=f"{schema.MASK_IOU}/forward", value=None, outcome=NOT_MEASURABLE, provenance=agree.provenance,
                note=f"not measured: eager keeps no query on the first {agree.looked_at} val pairs")
        else:
            put(metric=f"{schema.MASK_IOU}/forward", value=agree.mask_iou, unit=schema.FRACTION,
                provenance=agree.provenance)
    for method, c in checks.items():
        how = f"ExecuTorch runtime vs torch eager, {method}, seeded sample inputs, batch 1"
        if method in (references or {}):
            how += " (eager: the PT2E-converted graph Stage 4 scores, the program's val-pair calibration)"
        if c.mask_iou is not None and not (method == "forward" and agreement is not None):
            put(metric=f"{schema.MASK_IOU}/{method}", value=c.mask_iou, unit=schema.FRACTION,
                provenance=f"{how}; IoU of mask_logits > 0 over {c.iou_queries}")
        worst = max(c.max_abs_err, key=c.max_abs_err.get)
        put(metric=schema.max_abs_error(method), value=c.max_abs_err[worst],
            provenance=f"{how}; worst output {worst} (its max |eager| {c.ref_max_abs[worst]:.3g})")
    image = runtime.benchmark_pte(result.path, "forward", student, tracker=tracker, runs=runs, threads=1)
    put(metric=schema.HOST_IMAGE_LATENCY_MS, value=image["p50_ms"], unit=schema.MS,
        provenance=f"{result.backend} .pte on {image['provenance']}; forward (image, cached prompt), 10 warm-up then "
                   f"p50 of {runs} (p90 {image['p90_ms']:.2f}, trimmed mean {image['trimmed_mean_ms']:.2f})")
    put(metric=schema.HOST_IMAGE_LATENCY_P90_MS, value=image["p90_ms"], unit=schema.MS,  # the report's latency plot
        provenance=f"{result.backend} .pte on {image['provenance']}; forward, 10 warm-up then p90 of {runs}")
    line = f"host {result.backend}: forward p50 {image['p50_ms']:.2f} ms"
    if tracker is not None:
        track = runtime.benchmark_pte(result.path, "track", student, tracker=tracker, runs=runs, threads=1)
        put(metric=schema.HOST_VIDEO_FPS, value=track["fps"], unit=schema.FPS,
            provenance=f"{result.backend} .pte on {track['provenance']}; track step fed its own state, 10 warm-up "
                       f"then 1000 / p50 of {runs} ({track['p50_ms']:.2f} ms)")
        line += f", track {track['fps']:.1f} FPS"
    echo(line + "; " + ", ".join(f"{m} mask IoU {c.mask_iou if c.mask_iou is None else round(c.mask_iou, 3)}"
                                 for m, c in checks.items()))


def record_ane_share(result: ExportResult, record: Callable, echo: Callable[[str], None] = print) -> None:
    """``ane_percent``: MLComputePlan's ANE share of the Core ML partitions' ops (macOS 14.4+), else why not."""
    subject = schema.export_subject(result.backend, result.mode)
    try:
        share = ane.ane_share(result.path)
    except ane.ComputePlanUnavailable as err:
        record(stage=schema.STAGE5, subject=subject, metric=schema.ANE_PERCENT, value=None, artifact=result.path,
               outcome=NOT_MEASURABLE, note=f"not measured here: {err}; the NPU cell uses the AOT delegated-op share")
        return
    others = ", ".join(f"{k} x{v}" for k, v in sorted(share["non_ane"].items())) or "none"
    record(stage=schema.STAGE5, subject=subject, metric=schema.ANE_PERCENT, value=100 * share["share"],
           unit=schema.PERCENT, artifact=result.path, note=f"not on the ANE: {others}",
           provenance=f"coremltools MLComputePlan (CPU_AND_NE) on this Mac: {share['ane_ops']} of "
                      f"{share['ops']} planned ops of {share['partitions']} Core ML partitions prefer the ANE")
    echo(f"MLComputePlan: {100 * share['share']:.1f}% of planned ops on the ANE")
