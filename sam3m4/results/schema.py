"""What a record names, in one place: stages, subjects, metrics with their units, and gate outcomes.

Writers (training, evaluation, quantize, export, device import, prune, the gates) and readers (the Markdown report,
the release matrix, the plots, the gates) use these constants, never a string typed in two places, so renaming a
metric here renames it for both sides; ``tests/results/test_results_schema.py`` fails when the report reads a metric that
no writer records.

    store.record(stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=schema.MIOU, value=0.57,
                 unit=schema.METRICS[schema.MIOU].unit)

A subject that carries a variable part is built by a function: :func:`export_subject` (``coreml/int4``) and
:func:`device_subject` (``ios/coreml/int4``). A gate's outcome is a value (:class:`GateOutcome`), not a sentence
to match.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- stages ----------------------------------------------------------------------------------------------------
STAGE3 = "stage3"        # teacher / student quality (report section 2)
STAGE4 = "stage4"        # quantization (section 4)
STAGE5 = "stage5"        # export and on-device results (section 5)
VISUAL = "visual"        # visual QA checklist (section 3)
STORAGE = "storage"      # prune before / after (section 7)
SUMMARY = "summary"      # the run's final checkpoints (section 1)
ARTIFACTS = "artifacts"  # the run manifest's files (section 6)
SANITY = "sanity"        # metric self-checks (appendix)
BENCH = "bench"          # `sam3m4 bench` (production presets)
STAGES = (STAGE3, STAGE4, STAGE5, VISUAL, STORAGE, SUMMARY, ARTIFACTS, SANITY, BENCH)
REPORT_SECTIONS = (STAGE3, STAGE4, STAGE5, VISUAL, STORAGE, SUMMARY, ARTIFACTS)  # the rest goes to the appendix

# --- subjects --------------------------------------------------------------------------------------------------
TEACHER = "teacher"
TEACHER_EMBEDDED = "teacher/embedded"      # the embedded default's own quality target
STUDENT_PHASE2 = "student/phase2"
STUDENT_VIDEO = "student/video"
DECISION = "decision"                      # stage4: the chosen quantization mode
RUN = "run"                                # summary / visual: facts about the whole run
LOGS = "logs"                              # storage: the prune logs
GT_IMAGE = "ground_truth/image"            # sanity: the ground truth through the metrics
GT_VIDEO = "ground_truth/video"
DAMAGED_IMAGE = "damaged/image"            # sanity: damaged ground truth must score lower
DAMAGED_VIDEO = "damaged/video"
PLANTED_ONE_BIT = "planted/1bit"           # stage4: a planted 1-bit quantization the gate must fail
PLANTED_PTE_LAYER = "planted/pte_layer"    # stage5: a .pte with one perturbed layer the deployed gate must fail


def export_subject(backend: str, mode: str) -> str:
    """``<backend>/<mode>``: an exported ``.pte`` measured on this host (``coreml/int4``)."""
    return f"{backend}/{mode}"


def decision_subject(backend: str) -> str:
    """``decision/<backend>``: Stage 4's choice of quant mode for one backend (``decision/xnnpack``)."""
    return f"{DECISION}/{backend}"


def device_subject(platform: str, backend: str, mode: str) -> str:
    """``<platform>/<backend>/<mode>``: a ``.pte`` measured on a phone (``ios/coreml/int4``)."""
    return f"{platform}/{backend}/{mode}"


# --- units -----------------------------------------------------------------------------------------------------
FRACTION, PERCENT, MB, BYTES, MS, FPS, RATIO, TEXT = "fraction", "percent", "MB", "bytes", "ms", "fps", "x", ""
POINTS, SECONDS, DB = "points", "s", "dB"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    what: str


def _metrics(*rows: tuple[str, str, str]) -> dict[str, Metric]:
    return {name: Metric(name, unit, what) for name, unit, what in rows}


# --- metrics ---------------------------------------------------------------------------------------------------
MIOU, PRESENCE_F1, IL_MCC = "miou", "presence_f1", "il_mcc"
JF, DAVIS_J, DAVIS_F = "jf", "j", "f"
MIOU_RATIO, PRESENCE_F1_RATIO, JF_RATIO, MIOU_COST = "miou_ratio", "presence_f1_ratio", "jf_ratio", "miou_cost"
SACO_CGF1_RATIO = "saco_cgf1_ratio"
SACO_CGF1, SACO_IL_MCC, SACO_PMF1, SACO_IL_F1 = "saco_cgf1", "saco_il_mcc", "saco_pmf1", "saco_il_f1"
SACO_VIDEO_CGF1, SACO_VIDEO_PHOTA = "saco_video_cgf1", "saco_video_phota"
SACO_VIDEO_IL_MCC, SACO_VIDEO_PMF1 = "saco_video_il_mcc", "saco_video_pmf1"
HOST_FPS = "host_fps"
SIZE_MB, COMPRESSION, AVG_MS, MIOU_DROP, TRACK_FPS = "size_mb", "compression", "avg_ms", "miou_drop", "track_fps"
CRITERION_MET, CHOSEN_MODE, QAT = "criterion_met", "chosen_mode", "qat"
EXPORT_OK, PTE_MB, NPU_PERCENT, CPU_DELEGATION_PERCENT = "export_ok", "pte_mb", "npu_percent", "cpu_delegation_percent"
ANE_PERCENT, DELEGATED_PERCENT, MASK_IOU = "ane_percent", "delegated_percent", "mask_iou"
MAX_ABS_ERROR = "max_abs_error"
XNNPACK_INT8_MAC_SHARE = "xnnpack_int8_mac_share"  # percent of the image path's MACs in XNNPACK int8 kernels (AOT)
PTE_METHODS = ("encode_text", "forward", "track")  # the methods of a deployable .pte (track: a tracker's only)
HOST_IMAGE_LATENCY_MS, HOST_IMAGE_LATENCY_P90_MS = "host_image_latency_ms", "host_image_latency_p90_ms"
HOST_VIDEO_FPS, IMAGE_LATENCY_MS, VIDEO_FPS = "host_video_fps", "image_latency_ms", "video_fps"
MANIFEST, PROMPTS, INDEX_HTML, VERDICT, CHECKLIST = "manifest", "prompts", "index_html", "verdict", "checklist"
BEFORE_BYTES, AFTER_BYTES, PLANNED_AFTER_BYTES = "before_bytes", "after_bytes", "planned_after_bytes"
DRY_RUN_LOG, APPLY_LOG = "dry_run_log", "apply_log"
FINAL_IMAGE_CKPT, FINAL_VIDEO_CKPT = "final_image_ckpt", "final_video_ckpt"
SIZE = "size"
PRESENCE_ECE, PRESENCE_ECE_LOW, PRESENCE_ECE_HIGH = "presence_ece", "presence_ece_low", "presence_ece_high"
PRESENCE_F1_BEST, PRESENCE_BEST_THRESHOLD = "presence_f1_best", "presence_best_threshold"
PRESENCE_PLATEAU_LOW, PRESENCE_PLATEAU_HIGH = "presence_plateau_low", "presence_plateau_high"
PRESENCE_SCORES, PRESENCE_F1_GAP, PRESENCE_ECE_RISE = "presence_scores", "presence_f1_gap", "presence_ece_rise"
SACO_CGF1_AT_BEST, SACO_IL_MCC_AT_BEST = "saco_cgf1_at_best", "saco_il_mcc_at_best"
DEPLOYED_MIOU_DROP, EXPORT_MIOU_GAP = "deployed_miou_drop", "export_miou_gap"
DEPLOYED_EVAL_S, SHIPPED = "deployed_eval_s", "shipped"
SHIPPED_DECISION, SHIPPED_EXTRA = "decision", "extra"  # the values of a ``shipped`` record
BUNDLE_MB, BUNDLE_MASK_IOU, BUNDLE_PASSED = "bundle_mb", "bundle_mask_iou", "bundle_passed"
BUNDLE_MAX_ABS_ERROR, OP_GAP_SNR_DB = "bundle_max_abs_error", "op_gap_snr_db"
PRESENCE_THRESHOLD, PRESENCE_F1_SHIPPED = "presence_threshold", "presence_f1_shipped"
PRESENCE_F1_HELD_OUT, PRESENCE_F1_HELD_OUT_05 = "presence_f1_held_out", "presence_f1_held_out_05"
MIOU_SHIPPED = "miou_shipped"

METRICS = _metrics(
    (MIOU, FRACTION, "mean IoU over (image, noun phrase) pairs"),
    (PRESENCE_F1, FRACTION, "presence F1 over pairs (score >= 0.5)"),
    (IL_MCC, FRACTION, "image-level Matthews correlation"),
    (JF, FRACTION, "DAVIS J&F mean"), (DAVIS_J, FRACTION, "DAVIS region similarity"),
    (DAVIS_F, FRACTION, "DAVIS boundary F"),
    (MIOU_RATIO, RATIO, "student / teacher mIoU"), (PRESENCE_F1_RATIO, RATIO, "student / teacher Presence F1"),
    (JF_RATIO, RATIO, "+Video student / teacher J&F"), (MIOU_COST, FRACTION, "image mIoU lost by video training"),
    (SACO_CGF1_RATIO, RATIO, "student / teacher SA-Co cgF1"),
    (SACO_CGF1, FRACTION, "SA-Co image cgF1"), (SACO_IL_MCC, FRACTION, "SA-Co image IL_MCC"),
    (SACO_PMF1, FRACTION, "SA-Co image pmF1"), (SACO_IL_F1, FRACTION, "SA-Co image IL_F1"),
    (SACO_VIDEO_CGF1, FRACTION, "SA-Co video cgF1"), (SACO_VIDEO_PHOTA, FRACTION, "SA-Co video pHOTA"),
    (SACO_VIDEO_IL_MCC, FRACTION, "SA-Co video IL_MCC"), (SACO_VIDEO_PMF1, FRACTION, "SA-Co video pmF1"),
    (HOST_FPS, FPS, "track step rate on this host"),
    (SIZE_MB, MB, "deployable weight bytes"), (COMPRESSION, RATIO, "fp16 size / this mode's size"),
    (AVG_MS, MS, "host eager latency"), (MIOU_DROP, FRACTION, "mIoU points lost against fp16"),
    (TRACK_FPS, FPS, "quantized tracker's host track rate"),
    (CRITERION_MET, TEXT, "whether a mode met the mIoU-drop criterion"), (CHOSEN_MODE, TEXT, "the chosen mode"),
    (QAT, TEXT, "whether QAT ran, and why"),
    (EXPORT_OK, TEXT, "the .pte was written"), (PTE_MB, MB, ".pte file size"),
    (NPU_PERCENT, PERCENT, "compute ops inside an NPU delegate (AOT)"),
    (CPU_DELEGATION_PERCENT, PERCENT, "compute ops inside the XNNPACK delegate"),
    (XNNPACK_INT8_MAC_SHARE, PERCENT, "image path MACs in XNNPACK int8 kernels (lowered graph, host-independent)"),
    (ANE_PERCENT, PERCENT, "ops MLComputePlan places on the ANE"), (DELEGATED_PERCENT, PERCENT, "bench: delegated ops"),
    (MASK_IOU, FRACTION, "runtime vs eager mask IoU"),
    (MAX_ABS_ERROR, TEXT, "runtime vs eager max |error| of a method's worst output (in that output's own units)"),
    (HOST_IMAGE_LATENCY_MS, MS, "host runtime image latency p50"),
    (HOST_IMAGE_LATENCY_P90_MS, MS, "host runtime image latency p90"),
    (HOST_VIDEO_FPS, FPS, "host runtime track rate"),
    (IMAGE_LATENCY_MS, MS, "on-device image latency"), (VIDEO_FPS, FPS, "on-device track rate"),
    (MANIFEST, TEXT, "visual QA image manifest"), (PROMPTS, TEXT, "visual QA prompt set"),
    (INDEX_HTML, TEXT, "visual QA page"), (VERDICT, TEXT, "a checklist item's Pass / Fail"),
    (CHECKLIST, TEXT, "the saved checklist"),
    (BEFORE_BYTES, BYTES, "size before the prune"), (AFTER_BYTES, BYTES, "size after the prune"),
    (PLANNED_AFTER_BYTES, BYTES, "size after the planned prune (dry run)"),
    (DRY_RUN_LOG, TEXT, "the prune's dry-run log"), (APPLY_LOG, TEXT, "the prune's apply log"),
    (FINAL_IMAGE_CKPT, TEXT, "the run's final image checkpoint"),
    (FINAL_VIDEO_CKPT, TEXT, "the run's final video checkpoint"),
    (SIZE, BYTES, "an artifact's size"),
    (PRESENCE_ECE, FRACTION, "expected calibration error of the presence score (15 equal-width bins)"),
    (PRESENCE_ECE_LOW, FRACTION, "presence ECE: low end of the 95% bootstrap interval"),
    (PRESENCE_ECE_HIGH, FRACTION, "presence ECE: high end of the 95% bootstrap interval"),
    (PRESENCE_F1_BEST, FRACTION, "Presence F1 at the F1-best threshold"),
    (PRESENCE_BEST_THRESHOLD, FRACTION, "the F1-best presence threshold (a score in [0, 1]); not gated"),
    (PRESENCE_PLATEAU_LOW, FRACTION, "lowest threshold of the F1 plateau (F1 within 0.01 of the best)"),
    (PRESENCE_PLATEAU_HIGH, FRACTION, "highest threshold of the F1 plateau (F1 within 0.01 of the best)"),
    (PRESENCE_SCORES, TEXT, "the per-pair presence scores and labels file"),
    (PRESENCE_F1_GAP, FRACTION, "best Presence F1 minus Presence F1 at the shipped threshold"),
    (PRESENCE_ECE_RISE, FRACTION, "presence ECE of the shipped mode minus fp16's, on the same pairs"),
    (SACO_CGF1_AT_BEST, FRACTION, "SA-Co image cgF1 with detections kept at the F1-best threshold"),
    (SACO_IL_MCC_AT_BEST, FRACTION, "SA-Co image IL_MCC with detections kept at the F1-best threshold"),
    (DEPLOYED_MIOU_DROP, POINTS, "mIoU points an exported .pte (ExecuTorch runtime, val pairs) loses vs fp16 eager"),
    (EXPORT_MIOU_GAP, POINTS, "|.pte mIoU - its own mode's eager mIoU| on the same val pairs, in points"),
    (DEPLOYED_EVAL_S, SECONDS, "wall time of a .pte's deployed evaluation"),
    (SHIPPED, TEXT, "why a .pte was exported: Stage 4's decision or an extra config case"),
    (BUNDLE_MB, MB, "verification bundle (.bpte) file size"),
    (BUNDLE_MASK_IOU, FRACTION, "bundled .pte run where it ships vs the eager reference: worst method's mask IoU"),
    (BUNDLE_PASSED, TEXT, "every bundled case within ExecuTorch's elementwise check (rtol 1e-3, atol 1e-5)"),
    (BUNDLE_MAX_ABS_ERROR, TEXT, "bundled run's max |out - reference| over methods, cases and outputs"),
    (OP_GAP_SNR_DB, DB, "lowest per-operator SNR of the XNNPACK program vs eager (ExecuTorch Inspector)"),
    (PRESENCE_THRESHOLD, FRACTION, "the presence threshold shipped with a mode (fitted on a calibration part of val)"),
    (PRESENCE_F1_SHIPPED, FRACTION, "Presence F1 at the shipped presence threshold (every scored pair)"),
    (PRESENCE_F1_HELD_OUT, FRACTION, "Presence F1 at the shipped threshold on the held-out part of the val pairs"),
    (PRESENCE_F1_HELD_OUT_05, FRACTION, "Presence F1 at SAM 3's 0.5 on the held-out part of the val pairs"),
    (MIOU_SHIPPED, FRACTION, "mIoU with detections kept at the shipped presence threshold"),
)

# Metrics whose name is built when written, with the code that builds it (the schema test accepts these).
BUILT_NAMES = {DRY_RUN_LOG: 'f"{mode}_log" in sam3m4/storage/cli.py',
               APPLY_LOG: 'f"{mode}_log" in sam3m4/storage/cli.py',
               MIOU_RATIO: 'f"{metric}_ratio" in acceptance/test_stage3.py',
               PRESENCE_F1_RATIO: 'f"{metric}_ratio" in acceptance/test_stage3.py',
               MAX_ABS_ERROR: "max_abs_error(method) (below) in sam3m4/export/case.py"}


def max_abs_error(method: str) -> str:
    """``max_abs_error/<method>``: a ``.pte`` method's worst output against eager (one target per method)."""
    return f"{MAX_ABS_ERROR}/{method}"


# --- outcomes --------------------------------------------------------------------------------------------------
# a record with no value says why in its ``outcome`` field (read by the gates and the release matrix)
UNSUPPORTED_OUTCOME = "unsupported"       # the backend declares this case unsupported; nothing was attempted
NOT_MEASURABLE = "not_measurable"         # this host cannot measure it (toolchain, OS or device absent)
RECORD_OUTCOMES = (UNSUPPORTED_OUTCOME, NOT_MEASURABLE)

# a gate's outcome
PASS, FAIL, NOT_MEASURED, UNSUPPORTED = "pass", "fail", "not measured", "unsupported"
GATE_OUTCOMES = (PASS, FAIL, NOT_MEASURED, UNSUPPORTED)


@dataclass(frozen=True)
class GateOutcome:
    """A gate's outcome as a value: one of :data:`GATE_OUTCOMES`, and the reason when it is not ``pass``."""

    outcome: str
    reason: str = ""

    def __post_init__(self):
        if self.outcome not in GATE_OUTCOMES:
            raise ValueError(f"gate outcome {self.outcome!r}: expected one of {', '.join(GATE_OUTCOMES)}")
        if self.outcome in (NOT_MEASURED, UNSUPPORTED) and not self.reason:
            raise ValueError(f"gate outcome {self.outcome!r} needs its reason")

    @property
    def blocks_release(self) -> bool:
        """A failed gate blocks a release (the page's NO-GO). A not-measured one only warns there (a release manager
        may accept it for one run in ``reports/<run>/accepted.yaml``) and fails ``pytest --release``; an unsupported
        case does neither (docs/gates.md)."""
        return self.outcome == FAIL


def gate_outcome_of_record(outcome: str | None) -> str | None:
    """The gate outcome a record's ``outcome`` field stands for (None: the record has none)."""
    return {UNSUPPORTED_OUTCOME: UNSUPPORTED, NOT_MEASURABLE: NOT_MEASURED}.get(outcome) if outcome else None
