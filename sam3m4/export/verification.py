"""Stage 5's checks of the file that ships, beside the export: the verification bundle of every ``.pte`` and, for
XNNPACK, the per-operator numeric gaps. :func:`sam3m4.export.case.export_case` calls these; each records what it
did (or why not) and never fails the export.

    cases, why = val_cases(student, tracker, source=meta["source"], data=None, k=8, vocab=None)
    bundles, errors = [], []
    result = export_pte(..., on_program=bundle_writer(cases, bundles, errors) if cases else None)
    record_bundles(result, flow, bundles, errors, why, record, say, run="demo")
    record_op_gaps(result, student, tracker, cases, record, say)

Records (stage ``stage5``, subject ``<backend>/<mode>``): ``bundle_mb`` (the ``.bpte``, sha256 in the record);
where the flow runs on this host (XNNPACK; Core ML on macOS, UNTESTED on this project's Linux hosts) the bundle
is run here: ``bundle_mask_iou`` (gated by ``bundle_mask_iou``), ``bundle_passed``, ``bundle_max_abs_error``,
and ``<bpte stem>.bundle_result.json`` beside it; elsewhere ``bundle_mask_iou`` is recorded not measurable with
the command that measures it (run the bundle on the phone, then ``sam3m4 device import``). XNNPACK:
``op_gap_snr_db`` with the top rows in the note and ``<pte stem>.op_gaps.json`` as its artifact
(:mod:`.op_gaps`; ETRecord, ETDump and debug buffer under ``<pte stem>.devtools/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from sam3m4.export.bundle import (K_DEFAULT, BundleFile, bundle_cases, verify_bundle)
from sam3m4.export.op_gaps import op_gaps
from sam3m4.export.token_table import RestrictedTokenizer
from sam3m4.quantize.pipeline import load_val
from sam3m4.results import schema
from sam3m4.results.store import NOT_MEASURABLE

IMPORT_HINT = ("run the .bpte on the device with ExecuTorch's bundled-program runner (docs/export.md, "
               "\"Verification bundles\"), write its result JSON and `sam3m4 device import RESULT.json "
               "--pte-dir {dir} --run {run}`")


def val_cases(student, tracker, *, source, data, k: int = K_DEFAULT, vocab=None, references: Callable | None = None):
    """(bundle cases from the val pairs the model was quantized against, None) or (None, why not).

    ``source``: the checkpoint ``sam3m4 quantize`` started from (its data root holds the val set); ``data``:
    a data root instead; ``vocab``: a restricted token table's :class:`~sam3m4.export.token_table.Vocabulary`;
    ``references``: () -> ``{method: module}`` of :func:`~sam3m4.export.bundle.bundle_cases` (None: eager)."""
    if k < 1:
        return None, "bundle cases: 0 requested"
    try:
        if not source and not data:
            return None, "no val data: the quantized model names no source checkpoint (pass --data)"
        images, videos, _ = load_val(source, Path(data) if data else None)
        tokenizer = RestrictedTokenizer(vocab) if vocab is not None else None
        return bundle_cases(student, tracker, images=images, videos=videos, k=k, tokenizer=tokenizer,
                            references=references() if references is not None else None), None
    except Exception as err:  # noqa: BLE001  (recorded as not measurable, with the reason)
        return None, f"no val cases for the bundle: {type(err).__name__}: {err}"[:600]


def record_bundles(result, flow, bundles: list[BundleFile], errors: list, why: str | None, record: Callable,
                   say: Callable[[str], None], run: str) -> None:
    """Record the bundles :func:`~sam3m4.export.bundle.bundle_writer` wrote for ``result`` (an
    :class:`~sam3m4.export.export.ExportResult`), and verify them here when the flow runs on this host."""
    subject = schema.export_subject(result.backend, result.mode)
    hint = IMPORT_HINT.format(dir=result.path.parent if result.path else "<export dir>", run=run)
    if why or errors or not bundles:
        reason = why or "; ".join(f"{p.name}: {e}" for p, e in errors) or "no bundle written"
        record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MASK_IOU, value=None,
               outcome=NOT_MEASURABLE, note=f"no verification bundle: {reason}", artifact=result.path)
        say(f"sam3m4 export: {subject}: no verification bundle: {reason}")
        return
    for b in bundles:
        cases = ", ".join(f"{m} x{n}" for m, n in b.cases.items())
        record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MB, value=b.size_bytes / 1e6,
               unit=schema.MB, artifact=b.path,
               provenance=f"ExecuTorch BundledProgram of {b.pte.name} (same program bytes) + test cases {cases}: "
                          f"real val inputs and the reference outputs (the eager model; an XNNPACK static-int8 program: "
                          f"its converted graph, calibrated as the program was)",
               note="; ".join(f"{m}: {', '.join(s[:3])}{' ...' if len(s) > 3 else ''}" for m, s in b.sources.items()))
        say(f"{b.path}: verification bundle, {b.size_bytes / 1e6:.2f} MB, {cases}")
    if not flow.runs_here():
        record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MASK_IOU, value=None,
               outcome=NOT_MEASURABLE, artifact=bundles[0].path,
               note=f"not verified here: {flow.cannot_run_here()}; {hint}")
        return
    for b in bundles:
        try:
            res = verify_bundle(b.path)
        except Exception as err:  # noqa: BLE001
            record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MASK_IOU, value=None, failed_stage="run",
                   note=f"the bundle failed to run on this host: {type(err).__name__}: {err}"[:800], artifact=b.path)
            continue
        res.save(b.path.with_name(b.path.stem + ".bundle_result.json"))
        per = "; ".join(f"{m}: {'pass' if r.passed else 'fail'}, max abs err {r.max_abs_error:.3g}"
                        + (f", mask IoU {r.mask_iou:.3f}" if r.mask_iou is not None else "")
                        for m, r in res.methods.items())
        how = f"{b.path.name} run on {res.device} with {res.runtime}; reference: eager outputs bundled at export"
        if res.mask_iou is not None:
            record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MASK_IOU, value=res.mask_iou,
                   unit=schema.FRACTION, artifact=b.path, provenance=how, note=per)
        record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_PASSED, value=res.passed, unit="",
               artifact=b.path, provenance=f"{how}; ExecuTorch's check at rtol {res.rtol:g}, atol {res.atol:g}",
               note=per)
        record(stage=schema.STAGE5, subject=subject, metric=schema.BUNDLE_MAX_ABS_ERROR,
               value=max(r.max_abs_error for r in res.methods.values()), unit="", artifact=b.path, provenance=how,
               note=per)
        say(f"bundle verified here: {per}")


def record_op_gaps(result, student, tracker, cases: dict | None, record: Callable, say: Callable[[str], None],
                   per_op: bool = True) -> None:
    """XNNPACK only: per-operator gaps on the first val case of each method -> ``<pte stem>.op_gaps.json`` and an
    ``op_gap_snr_db`` record whose note lists the top rows."""
    subject = schema.export_subject(result.backend, result.mode)
    if not cases:
        record(stage=schema.STAGE5, subject=subject, metric=schema.OP_GAP_SNR_DB, value=None, outcome=NOT_MEASURABLE,
               note="no val case to run the per-operator comparison on", artifact=result.path)
        return
    methods = [m for m in result.methods if cases.get(m)]
    gaps = op_gaps(student, backend=result.backend, mode=result.mode, tracker=tracker, per_op=per_op,
                   inputs={m: cases[m][0].inputs for m in methods},
                   sources={m: cases[m][0].source for m in methods},
                   out_dir=result.path.with_name(result.path.stem + ".devtools"))
    path = gaps.save(result.path.with_name(result.path.stem + ".op_gaps.json"))
    snrs = [g.worst_snr_db for g in gaps.methods.values() if g.worst_snr_db is not None]
    top = [f"{m}: " + ", ".join(f"{'+'.join(r.ops[:2])} {r.snr_db:.1f} dB" if r.snr_db is not None else
                                f"{'+'.join(r.ops[:2])} -" for r in g.rows[:3])
           if not g.error else f"{m}: {g.error}" for m, g in gaps.methods.items()]
    how = (f"ExecuTorch Inspector calculate_numeric_gap('SNR'), {gaps.granularity}; one real val input per method; "
           f"ETRecord + ETDump + debug buffer in {path.stem.removesuffix('.op_gaps')}.devtools/; {gaps.seconds:.1f} s")
    if snrs:
        record(stage=schema.STAGE5, subject=subject, metric=schema.OP_GAP_SNR_DB, value=min(snrs), unit=schema.DB,
               artifact=path, provenance=how, note="top rows (by SNR fall): " + " | ".join(top))
    else:
        record(stage=schema.STAGE5, subject=subject, metric=schema.OP_GAP_SNR_DB, value=None, failed_stage="run",
               artifact=path, note="no operator compared: " + " | ".join(top))
    say(f"op gaps ({gaps.seconds:.1f} s): " + " | ".join(top))
