"""Render ``reports/<run>/report.md`` from the results store, following the user's report template.

The template (``../shared/reference/report-template.md``) is Korean; its header, 7 sections, headings
and table columns are kept as they are. Every cell is filled from the latest matching record in
``reports/<run>/results.jsonl``; a number carries a footnote with its provenance (how and where it was
measured) and a cell with no measurement shows ``-`` with a footnote saying why.

    sam3m4 report --run demo            # writes reports/demo/report.md

Targets (the remarks' ``목표`` and the quantization criterion) come from the file
:func:`sam3m4.results.targets.load_targets_file` finds; the header names it and its sha256. A broken targets
file stops the report (:class:`~sam3m4.errors.ConfigError` naming the file and key); only when no file was
given and none exists at the default place does it render without targets, and the header says so.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
from pathlib import Path

from sam3m4.eval.saco import PUBLISHED
from sam3m4.env import environment_line, human_bytes
from sam3m4.fileio import atomic_write_text
from sam3m4.paths import DISTILL_DIR, REPORT_FILE, REPORTS_ROOT, VIDEO_CACHE_DIR, VIDEO_DIR, VIS_DIR, project_root
from sam3m4.quantize.modes import CONVS_PER_BACKEND, KEPT_HIGHER
from sam3m4.report import deployed
from sam3m4.report.op_gaps import op_gap_lines
from sam3m4.report.plots import Plot, markdown_links, write_plots
from sam3m4.report.release import target_text
from sam3m4.results import schema
from sam3m4.results.store import Record, ResultsStore
from sam3m4.results.targets import Target, TargetsFile, TargetsNotFound, load_targets_file

STAGE3_ROWS = [("Teacher (SAM3)", schema.TEACHER, "기준선"), ("Student (Phase2 final)", schema.STUDENT_PHASE2, ""),
               ("Student (+Video Distill)", schema.STUDENT_VIDEO, "")]
QUANT_ROWS = [("fp16", "fp16"), ("int4", "int4"), ("int8_int4", "int8_int4"),
              ("qat_int4 (optional)", "qat_int4"), ("qat_int8_int4 (optional)", "qat_int8_int4")]
VISUAL_ROWS = [("작은 물체 분할 안정성", "small_objects"), ("다중 객체 분리 품질", "multi_object_separation"),
               ("배경 누수(오탐)", "background_leakage"), ("프롬프트 반응성", "prompt_responsiveness"),
               ("Teacher 대비 품질 차이(시각)", "teacher_difference")]
DEPLOY_ROWS = [("Export 성공", schema.EXPORT_OK, None), (".pte 크기 (MB)", schema.PTE_MB, "pte_size_mb"),
               ("이미지 추론 지연 (ms)", schema.IMAGE_LATENCY_MS, "image_latency_ms"),
               ("비디오 FPS", schema.VIDEO_FPS, "video_fps"), ("NPU 활용률", schema.NPU_PERCENT, "npu_utilisation")]
STORAGE_ROWS = [(DISTILL_DIR, DISTILL_DIR), (VIDEO_DIR, VIDEO_DIR), (VIS_DIR, VIS_DIR),
                (VIDEO_CACHE_DIR, VIDEO_CACHE_DIR), ("전체 디스크 사용량", "total")]
ARTIFACT_ROWS = [("체크포인트", "checkpoint"), ("양자화 모델", "quantized"), ("배포 바이너리(.pte)", "pte"),
                 ("로그", "log"), ("시각 검증 리포트", "visual")]

# Why a cell can be empty, per stage: the command that fills it.
HOW_TO_FILL = {
    schema.STAGE3: "run `sam3m4 eval` for this model (Stage 3)",
    schema.STAGE4: "run `sam3m4 quantize --mode compare` (Stage 4)",
    schema.STAGE5: "export and measure it (`sam3m4 export`, `sam3m4 device import` for on-device numbers)",
    schema.VISUAL: "run `sam3m4 visual-eval` and save its checklist",
    schema.STORAGE: "run `sam3m4 prune` (dry run, then `--apply`)",
    schema.SUMMARY: "run the training pipeline (`sam3m4 pipeline`)",
    schema.ARTIFACTS: "run the pipeline stage that produces it",
}


class _Notes:
    """Collects footnotes: one per distinct provenance or reason, numbered in order of first use."""

    def __init__(self):
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[^{self.texts.index(text) + 1}]"

    def render(self) -> str:
        return "\n".join(f"[^{i}]: {t}" for i, t in enumerate(self.texts, start=1))


def format_value(value, unit: str = "") -> str:
    """Display a recorded value: fractions with 3 decimals, MB/ms/fps with 1, bools as 성공/실패."""
    if isinstance(value, bool):
        return "성공" if value else "실패"
    if isinstance(value, (int, float)):
        if unit == "fraction":
            return f"{value:.3f}"
        if unit == "percent":
            return f"{value:.1f}%"
        if unit == "x":
            return f"{value:.1f}x"
        if unit == "bytes":
            return human_bytes(value)
        if isinstance(value, int):
            return str(value)
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


class _Report:
    """Looks records up and renders cells with footnotes."""

    def __init__(self, store: ResultsStore, targets: dict[str, Target], targets_line: str):
        self.records = store.records()
        self.run = store.run
        self.targets = targets
        self.targets_line = targets_line
        self.notes = _Notes()

    def find(self, stage: str, subject: str, metric: str) -> Record | None:
        found = None
        for rec in self.records:
            if rec.stage == stage and rec.subject == subject and rec.metric == metric:
                found = rec
        return found

    def provenance(self, rec: Record) -> str:
        text = rec.provenance or "provenance not recorded"
        if rec.artifact:
            sha = f", sha256 {rec.sha256[:12]}" if rec.sha256 else ""
            text += f" (artifact `{rec.artifact}`{sha})"
        return text

    def cell(self, stage: str, subject: str, metric: str, why: str | None = None) -> str:
        rec = self.find(stage, subject, metric)
        if rec is None or rec.value is None:
            reason = why or (rec.note if rec is not None and rec.note else None) or (
                f"not measured in run `{self.run}`: no `{stage}` record for this cell; "
                f"{HOW_TO_FILL.get(stage, 'run the stage that measures it')}.")
            return "-" + self.notes.ref(reason)
        if rec.value is False and rec.outcome in (schema.NOT_MEASURABLE, schema.UNSUPPORTED_OUTCOME):
            # nothing was attempted (no toolchain here, or the backend declares the case unsupported): not a failure
            word = "not attempted" if rec.outcome == schema.NOT_MEASURABLE else "unsupported"
            why = (rec.note or "").split(" (")[0].strip()  # "QNN SDK not found (set QNN_SDK_ROOT)": the footnote has it all
            return (f"{word} ({why})" if why else word) + self.notes.ref(self.provenance(rec))
        mark = "" if rec.passed is None else (" ✅" if rec.passed else " ❌")
        return format_value(rec.value, rec.unit) + mark + self.notes.ref(self.provenance(rec))

    def text(self, stage: str, subject: str, metric: str, default: str = "-") -> str:
        rec = self.find(stage, subject, metric)
        return default if rec is None or rec.value is None else format_value(rec.value, rec.unit)

    # --- sections -------------------------------------------------------------------------------
    def header(self, author: str) -> list[str]:
        lines = ["# SAM3_M4 결과 리포트", "",
                 f"> 작성일: `{_dt.date.today().isoformat()}`",
                 f"> 작성자: `{author}`",
                 f"> 실행 환경: `{environment_line()}`",
                 f"> 목표 파일: {self.targets_line}", ""]
        rehearsal = self.find("rehearsal", "run", "teacher_weights")
        if rehearsal is not None:  # `make rehearse`: real dimensions, random teacher (sam3m4.pipeline.plan)
            lines += [f"> **Rehearsal (리허설)**: teacher weights {rehearsal.value}. Shapes, time, memory and disk "
                      f"are real; every accuracy figure below is meaningless. {rehearsal.provenance}.", ""]
        return lines

    def summary(self) -> list[str]:
        stages = [("Phase2", schema.STAGE3, schema.STUDENT_PHASE2), ("Video Distill", schema.STAGE3, schema.STUDENT_VIDEO),
                  ("Quantization", schema.STAGE4, None), ("Deploy", schema.STAGE5, None)]
        covered = [name for name, stage, subject in stages
                   if any(r.stage == stage and (subject is None or r.subject == subject) for r in self.records)]
        scope = " -> ".join(covered) if covered else "-" + self.notes.ref(
            f"run `{self.run}` has no Stage 3-5 records yet (only: "
            f"{', '.join(sorted({r.stage for r in self.records})) or 'none'}).")
        quant = self.find(schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE)
        quant_cell = (f"`{quant.value}`" + self.notes.ref(self.provenance(quant))) if quant else self.cell(
            schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE)
        return ["## 1) 실행 요약", "", "| 항목 | 값 |", "|---|---|",
                f"| 최종 이미지 ckpt | {self._path_cell(schema.FINAL_IMAGE_CKPT)} |",
                f"| 최종 비디오 ckpt | {self._path_cell(schema.FINAL_VIDEO_CKPT)} |",
                f"| 양자화 모드 | {quant_cell} |",
                f"| 리포트 범위 | {scope} |", ""]

    def _path_cell(self, metric: str) -> str:
        rec = self.find(schema.SUMMARY, schema.RUN, metric)
        if rec is None:
            return self.cell(schema.SUMMARY, schema.RUN, metric)
        return f"`{rec.value}`" + self.notes.ref(self.provenance(rec))

    def stage3(self) -> list[str]:
        lines = ["## 2) Stage 3 성능 (학습 모델 품질)", "",
                 "| 모델 | mIoU | Presence F1 | J&F (video) | 비고 |", "|---|---:|---:|---:|---|"]
        for label, subject, remark in STAGE3_ROWS:
            jf = "-" if subject == schema.STUDENT_PHASE2 else self.cell(schema.STAGE3, subject, schema.JF)
            note = remark  # a fixed remark per row (nothing records one)
            lines.append(f"| {label} | {self.cell(schema.STAGE3, subject, schema.MIOU)} | "
                         f"{self.cell(schema.STAGE3, subject, schema.PRESENCE_F1)} | {jf} | {note} |")
        lines.append("")
        lines += self.saco_official()
        gates = [r for r in self.records if r.stage == schema.STAGE3 and r.passed is not None]
        good = [f"{r.subject} {r.metric} {format_value(r.value, r.unit)} ({r.comparison} {r.target:g})"
                for r in _latest_per_key(gates) if r.passed]
        bad = [f"{r.subject} {r.metric} {format_value(r.value, r.unit)} (목표 {r.comparison} {r.target:g})"
               for r in _latest_per_key(gates) if not r.passed]
        missing = [label for label, subject, _ in STAGE3_ROWS if self.find(schema.STAGE3, subject, schema.MIOU) is None]
        action = ("실패 게이트 해결: " + "; ".join(bad)) if bad else (
            ("미측정 항목 실행: " + ", ".join(missing)) if missing else "-")
        lines += ["### Stage 3 코멘트", "",
                  "- 주요 개선점: " + ("; ".join(good) if good else "-"),
                  "- 실패/회귀 항목: " + ("; ".join(bad) if bad else "없음" if gates else "-"),
                  "- 다음 액션: " + action, ""]
        return lines

    def saco_official(self) -> list[str]:
        """The "SA-Co official metrics" table under the Stage 3 table: this run's models scored by Meta's own
        evaluators, and SAM 3's published rows (another dataset: labelled and cited, not to be read against ours)."""
        cols = [("image cgF1", schema.SACO_CGF1), ("IL_MCC", schema.SACO_IL_MCC), ("pmF1", schema.SACO_PMF1),
                ("IL_F1", schema.SACO_IL_F1), ("video cgF1", schema.SACO_VIDEO_CGF1), ("pHOTA", schema.SACO_VIDEO_PHOTA),
                ("video IL_MCC", schema.SACO_VIDEO_IL_MCC)]
        lines = ["### SA-Co official metrics", "",
                 "> Meta's evaluators (`sam3` package: `CGF1Evaluator` for images, `VEvalEvaluator` for video) on the "
                 "same predictions as the table above; cgF1, pmF1, IL_F1 and pHOTA in percent as SAM 3's paper prints "
                 "them, IL_MCC in [-1, 1]. IL_F1 is the official counterpart of Presence F1 (same rule; they differ "
                 "only where the official definition does: non-exhaustive pairs, several annotators, crowd-only GT).",
                 "", "| 모델 | " + " | ".join(label for label, _ in cols) + " | 데이터 |",
                 "|---|" + "---:|" * len(cols) + "---|"]
        for label, subject, _ in STAGE3_ROWS:
            cells = ["-" if subject == schema.STUDENT_PHASE2 and metric.startswith("saco_video_")  # no tracker yet
                     else self._saco_cell(subject, metric) for _, metric in cols]
            lines.append(f"| {label} | " + " | ".join(cells) + " | this run's val split |")
        for row in PUBLISHED:
            ref = self.notes.ref(f"{row['source']}; published on {row['dataset']}: a different dataset from this "
                                 "run's val split, shown for scale only")
            cells = [_saco_text(row["values"][m], m) if m in row["values"] else "-" for _, m in cols]
            lines.append(f"| {row['label']}{ref} | " + " | ".join(cells) + f" | {row['dataset']}: another dataset |")
        return lines + [""]

    def _saco_cell(self, subject: str, metric: str) -> str:
        rec = self.find(schema.STAGE3, subject, metric)
        if rec is None or rec.value is None:
            why = rec.note if rec is not None and rec.note else (
                f"not measured in run `{self.run}`: needs Meta's `sam3` package and the Stage 3 evaluation "
                "(`acceptance/test_stage3.py`; video and +Video rows: `sam3m4 distill video`).")
            return "-" + self.notes.ref(why)
        return _saco_text(rec.value, metric) + self.notes.ref(self.provenance(rec))

    def visual(self) -> list[str]:
        run_text = lambda metric, default: self.text(schema.VISUAL, schema.RUN, metric, default)  # noqa: E731
        lines = ["## 3) 사용자 시각 검증 (Visual QA)", "", "### 실행 정보", "",
                 f"- 이미지 manifest: `{run_text(schema.MANIFEST, 'configs/visual_eval/image_manifest_phase2.txt')}`",
                 f"- 프롬프트 세트: `{run_text(schema.PROMPTS, 'configs/visual_eval/prompts_core.txt')}`",
                 f"- 생성 결과: `{run_text(schema.INDEX_HTML, 'outputs/visual_eval/<run>/index.html')}`",
                 "", "### 관찰 체크리스트", "", "| 항목 | Pass/Fail | 메모 |", "|---|---|---|"]
        for label, key in VISUAL_ROWS:
            rec = self.find(schema.VISUAL, key, schema.VERDICT)
            memo = rec.note if rec is not None and rec.note else "-"
            lines.append(f"| {label} | {self.cell(schema.VISUAL, key, schema.VERDICT)} | {memo} |")
        return lines + [""]

    def stage4(self) -> list[str]:
        lines = ["## 4) Stage 4 양자화 성능 비교", "",
                 "> `sam3m4 quantize --mode compare --num-val 200` 결과 반영", "",
                 "| Mode | Size (MB) | Compression | mIoU | Presence F1 | Avg ms |",
                 "|---|---:|---:|---:|---:|---:|"]
        for label, mode in QUANT_ROWS:
            cells = [self.cell(schema.STAGE4, mode, m)
                     for m in (schema.SIZE_MB, schema.COMPRESSION, schema.MIOU, schema.PRESENCE_F1)]
            lines.append(f"| {label} | " + " | ".join(cells + [deployed.avg_ms_cell(self, mode)]) + " |")
        lines += deployed.eager_vs_deployed(self, QUANT_ROWS)
        lines += ["", "Notes: convolutions per backend (Core ML / XNNPACK / QNN); Linear and token table as the modes' "
                  "names say (token table int8 rows in fp16, 4-bit otherwise):", ""]
        for mode, per in CONVS_PER_BACKEND.items():
            lines.append(f"- `{mode}`: " + "; ".join(f"{backend}: {what}" for backend, what in per.items()))
        lines.append(f"- kept at higher precision: {KEPT_HIGHER}")
        target = self.targets.get("quant_miou_drop")
        crit = f"mIoU 하락 기준({target.describe()} vs fp16)" if target else "mIoU 하락 기준(2% 이내)"
        lines += ["", "### 양자화 의사결정", "",
                  f"- {crit} 충족 여부: {self.cell(schema.STAGE4, schema.DECISION, schema.CRITERION_MET)}",
                  f"- 최종 채택 모드: {self.cell(schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE)}",
                  *deployed.decision_lines(self),
                  f"- QAT 수행 여부 및 근거: {self.cell(schema.STAGE4, schema.DECISION, schema.QAT)}", ""]
        return lines + self.calibration()

    def _shipped_f1(self, stage: str, subject: str) -> str:
        """``0.317: 0.648 -> 0.787``: the shipped presence threshold, Presence F1 at 0.5 and at it (Stage 4: on the
        held-out pairs; a .pte: on every pair, nothing of it was fitted); ``-`` when not recorded."""
        thr = self.find(stage, subject, schema.PRESENCE_THRESHOLD)
        if stage == schema.STAGE5:
            at_05, at_t = self.find(stage, subject, schema.PRESENCE_F1), self.find(stage, subject, schema.PRESENCE_F1_SHIPPED)
        else:
            at_05, at_t = (self.find(stage, subject, m) for m in (schema.PRESENCE_F1_HELD_OUT_05, schema.PRESENCE_F1_HELD_OUT))
        if thr is None or at_05 is None or at_t is None:
            return "-"
        return f"{thr.value:.3f}: {at_05.value:.3f} -> {at_t.value:.3f}" + self.notes.ref(self.provenance(thr))

    def calibration(self) -> list[str]:
        """The presence calibration table (teacher and student of Stage 3, every Stage 4 mode) and its two gates."""
        rows = [(label, schema.STAGE3, subject) for label, subject, _ in STAGE3_ROWS[:2]]
        rows += [(label, schema.STAGE4, mode) for label, mode in QUANT_ROWS]
        rows += [(f".pte {s}", schema.STAGE5, s) for s in dict.fromkeys(
            r.subject for r in self.records if r.stage == schema.STAGE5 and r.metric == schema.PRESENCE_ECE)]
        rows = [r for r in rows if self.find(r[1], r[2], schema.PRESENCE_ECE) is not None]
        plateau = self.targets.get("presence_threshold_on_plateau")
        pinned = plateau.presence_threshold if plateau is not None else None
        ships = (f"The app ships threshold {pinned:g} (pinned by the targets file)" if pinned is not None else
                 "The app ships each mode's presence threshold, fitted by Stage 4 on a calibration part of the val "
                 "pairs (by image); 'F1 @0.5 -> @shipped' is Presence F1 on the held-out part (.pte rows: every pair)")
        lines = ["### Presence calibration", "",
                 "> Presence score = a pair's highest detection score over all queries. ECE: 15 equal-width bins, "
                 "95% bootstrap interval; best F1 over every threshold and the plateau (thresholds within 0.01 of "
                 f"it); SA-Co cgF1 / IL_MCC (Meta's evaluator) with detections kept at 0.5 and at the F1-best "
                 f"threshold. {ships}. docs/metrics.md defines each number.", ""]
        if not rows:
            return lines + ["- " + "-" + self.notes.ref(
                f"not measured in run `{self.run}`: the Stage 3 and Stage 4 gates record it "
                "(`acceptance/test_stage3.py`, `acceptance/test_stage4.py`)"), ""]
        lines += ["| 모델 | ECE [95% CI] | Best F1 @ threshold | F1 plateau | 출시 임계값: F1 @0.5 -> @shipped | "
                  "cgF1 @0.5 | IL_MCC @0.5 | cgF1 @best | IL_MCC @best |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, stage, subject in rows:
            num = lambda metric: self.find(stage, subject, metric)  # noqa: E731
            low, high = num(schema.PRESENCE_ECE_LOW), num(schema.PRESENCE_ECE_HIGH)
            best_t = num(schema.PRESENCE_BEST_THRESHOLD)
            lo_p, hi_p = num(schema.PRESENCE_PLATEAU_LOW), num(schema.PRESENCE_PLATEAU_HIGH)
            ci = f" [{low.value:.3f}, {high.value:.3f}]" if low is not None and high is not None else ""
            at = f" @ {best_t.value:.2f}" if best_t is not None else ""
            span = f"{lo_p.value:.2f}-{hi_p.value:.2f}" if lo_p is not None and hi_p is not None else "-"
            saco = [self._calibration_saco(stage, subject, m) for m in
                    (schema.SACO_CGF1, schema.SACO_IL_MCC, schema.SACO_CGF1_AT_BEST, schema.SACO_IL_MCC_AT_BEST)]
            ece_rec, best = num(schema.PRESENCE_ECE), num(schema.PRESENCE_F1_BEST)
            ece_cell = format_value(ece_rec.value, ece_rec.unit) + ci + self.notes.ref(self.provenance(ece_rec))
            best_cell = ("-" if best is None else format_value(best.value, best.unit) + at
                         + self.notes.ref(self.provenance(best)))
            lines.append(f"| {label} | {ece_cell} | {best_cell} | {span} | {self._shipped_f1(stage, subject)} | "
                         + " | ".join(saco) + " |")
        lines += ["", "- 게이트 (출시 모드):"]
        for key, metric in (("presence_threshold_on_plateau", schema.PRESENCE_F1_GAP),
                            ("presence_ece_rise", schema.PRESENCE_ECE_RISE)):
            recs = [r for r in self.records if r.stage == schema.STAGE4 and r.metric == metric]
            target = self.targets.get(key)
            goal = f" (목표 {target_text(target)})" if target is not None else ""
            if not recs:
                lines.append(f"  - {key}: -" + self.notes.ref(f"not measured in run `{self.run}`: "
                                                              "`acceptance/test_stage4.py` judges it"))
                continue
            rec = recs[-1]
            if rec.value is None:
                lines.append(f"  - {key} `{rec.subject}`: 미측정 - {rec.note}{self.notes.ref(self.provenance(rec))}")
            else:
                verdict = "" if rec.passed is None else (" 통과" if rec.passed else " 실패")
                lines.append(f"  - {key} `{rec.subject}`: {format_value(rec.value, rec.unit)}{goal}{verdict}"
                             + self.notes.ref(self.provenance(rec)))
        return lines + [""]

    def _calibration_saco(self, stage: str, subject: str, metric: str) -> str:
        rec = self.find(stage, subject, metric)
        if rec is None or rec.value is None:
            return "-"
        return _saco_text(rec.value, metric) + self.notes.ref(self.provenance(rec))

    def stage5(self) -> list[str]:
        lines = ["## 5) Stage 5 배포 준비/검증", "", "| 항목 | iOS(CoreML) | Android(QNN) | 비고 |", "|---|---|---|---|"]
        for label, metric, target_key in DEPLOY_ROWS:
            target = self.targets.get(target_key) if target_key else None
            remark = f"목표 `{target.describe()}`" if target else ""
            host = self.find_backend("xnnpack", None, schema.HOST_IMAGE_LATENCY_MS) if metric == schema.IMAGE_LATENCY_MS else None
            if host is not None and host.value is not None:
                remark += f"; host XNNPACK `{host.subject.split('/')[-1]}` p50 {host.value:.1f} ms{self.notes.ref(self.provenance(host))}"
            lines.append(f"| {label} | {self.deploy_cell('coreml', 'ios', metric)} | "
                         f"{self.deploy_cell('qnn', 'android', metric)} | {remark} |")
        return lines + deployed.stage5_lines(self) + [""]

    def find_backend(self, backend: str, platform: str | None, metric: str) -> Record | None:
        """Latest stage5 record of ``metric`` for ``[platform/]backend/<mode>``, preferring the chosen quant mode."""
        prefix = f"{platform}/{backend}/" if platform else f"{backend}/"
        recs = [r for r in self.records if r.stage == schema.STAGE5 and r.metric == metric and r.subject.startswith(prefix)
                and r.subject.count("/") == prefix.count("/")]
        chosen = self.find(schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE)
        preferred = [r for r in recs if chosen is not None and r.subject == prefix + str(chosen.value)]
        return (preferred or recs or [None])[-1]

    def deploy_cell(self, backend: str, platform: str, metric: str) -> str:
        """A section 5 cell: on-device records (``<platform>/<backend>/<mode>``) first, then the host's AOT ones."""
        rec = None
        if metric in (schema.IMAGE_LATENCY_MS, schema.VIDEO_FPS):
            rec = self.find_backend(backend, platform, metric)
            host = self.find_backend(backend, None, "host_" + metric)  # Core ML run on a Mac: better than nothing
            if (rec is None or rec.value is None) and host is not None and host.value is not None:
                rec = host
        if metric == schema.NPU_PERCENT:  # Core ML on a Mac: MLComputePlan's ANE share beats the AOT op count
            ane = self.find_backend(backend, None, schema.ANE_PERCENT)
            rec = ane if ane is not None and ane.value is not None else None
        if rec is None or rec.value is None:
            aot = self.find_backend(backend, None, metric)
            rec = aot if aot is not None else rec
        if rec is None:
            return self.cell(schema.STAGE5, backend, metric, why="not measured on device" if metric in (
                schema.IMAGE_LATENCY_MS, schema.VIDEO_FPS) else None)
        return self.cell(schema.STAGE5, rec.subject, rec.metric) + f" (`{rec.subject.split('/')[-1]}`)"

    def artifacts(self) -> list[str]:
        lines = ["## 6) 산출물 목록", ""]
        for label, kind in ARTIFACT_ROWS:
            recs = _latest_per_key([r for r in self.records if r.stage == schema.ARTIFACTS and r.subject == kind],
                                   key=lambda r: r.artifact or r.value)
            if not recs:
                lines.append(f"- {label}: " + self.cell(schema.ARTIFACTS, kind, schema.SIZE))  # none recorded: "-", why
                continue
            items = []
            for r in recs:
                size = f", {format_value(r.value, r.unit)}" if r.metric == schema.SIZE else ""
                sha = f", sha256 `{r.sha256[:12]}`" if r.sha256 else ""
                items.append(f"`{r.artifact or r.value}`{size}{sha}")
            lines.append(f"- {label}: " + "; ".join(items))
        return lines + [""]

    def storage(self) -> list[str]:
        lines = ["## 7) 용량 정리 전/후", "", "| 항목 | 정리 전 | 정리 후 | 절감 |", "|---|---:|---:|---:|"]
        for label, subject in STORAGE_ROWS:
            before = self.find(schema.STORAGE, subject, schema.BEFORE_BYTES)
            after = self.find(schema.STORAGE, subject, schema.AFTER_BYTES)
            metric = schema.AFTER_BYTES
            if after is None:  # only a dry run so far: show its plan, marked as such
                after, metric = self.find(schema.STORAGE, subject, schema.PLANNED_AFTER_BYTES), schema.PLANNED_AFTER_BYTES
            planned = " (dry run: 예정)" if metric == schema.PLANNED_AFTER_BYTES and after is not None else ""
            saved = "-"
            if before is not None and after is not None:
                delta = float(before.value) - float(after.value)
                pct = f" ({100 * delta / float(before.value):.0f}%)" if float(before.value) else ""
                saved = human_bytes(delta) + pct + planned
            lines.append(f"| {label} | {self.cell(schema.STORAGE, subject, schema.BEFORE_BYTES)} | "
                         f"{self.cell(schema.STORAGE, subject, metric)}{planned} | {saved} |")
        lines += ["", "### 정리 실행 로그", "",
                  f"- Dry-run: `{self.text(schema.STORAGE, schema.LOGS, schema.DRY_RUN_LOG, 'logs/storage_prune_dry_run_*.log')}`",
                  f"- Apply-run: `{self.text(schema.STORAGE, schema.LOGS, schema.APPLY_LOG, 'logs/storage_prune_apply_*.log')}`", ""]
        return lines

    def appendix(self) -> list[str]:
        """Records outside the template's tables (sanity checks, gates) so no number is hidden."""
        shown = set(schema.REPORT_SECTIONS)
        extra = _latest_per_key([r for r in self.records if r.stage not in shown])
        gates = _latest_per_key([r for r in self.records if r.passed is not None])
        lines = ["## 부록) 측정 기록", ""]
        if gates:
            failed = sum(1 for r in gates if not r.passed)
            lines.append(f"- 게이트: {len(gates) - failed} 통과 / {failed} 실패 (최신 기록 기준)")
        if extra:
            lines += ["", "| Stage | 대상 | 지표 | 값 | 목표 |", "|---|---|---|---:|---|"]
            for r in extra:
                target = f"{r.comparison} {r.target:g}" if r.target is not None else "-"
                lines.append(f"| {r.stage} | {r.subject} | {r.metric} | {self.cell(r.stage, r.subject, r.metric)} | {target} |")
        if len(lines) == 2:
            lines.append("- 기록 없음")
        return lines + [""]


def _saco_text(value: float, metric: str) -> str:
    """SAM 3's paper convention: IL_MCC as a fraction with 2 decimals, the F1-type and HOTA scores in percent."""
    return f"{value:.2f}" if schema.IL_MCC in metric else f"{100 * value:.1f}"


def _latest_per_key(records: list[Record], key=None) -> list[Record]:
    """Last record per (stage, subject, metric) (or per ``key(r)``), in first-seen order."""
    key = key or (lambda r: (r.stage, r.subject, r.metric))
    latest: dict = {}
    for r in records:
        latest[key(r)] = r
    return list(latest.values())


def render_report(run: str, root: str | os.PathLike = REPORTS_ROOT, author: str | None = None,
                  targets_path: str | os.PathLike | None = None, targets_file: TargetsFile | None = None,
                  plots: list[Plot] | None = None) -> Path:
    """Write ``<root>/<run>/report.md`` (atomically) from the run's results store and return its path.

    ``targets_file``: targets already loaded (the pytest session's); else ``targets_path`` or the default rule.
    ``plots``: already drawn (:func:`sam3m4.report.plots.write_plots`); else they are drawn here, next to it.
    """
    store = ResultsStore(run, root=root)
    try:
        targets_file = targets_file or load_targets_file(targets_path)
        targets, line = targets_file.targets, f"`{targets_file.describe()}`"
    except TargetsNotFound as err:  # nothing given, nothing at the default place: say so in the header
        targets, line = {}, f"없음 ({err})"
    rep = _Report(store, targets, line)
    author = author or os.environ.get("SAM3M4_AUTHOR") or _user()
    body = (rep.header(author) + rep.summary() + rep.stage3() + rep.visual() + rep.stage4() + rep.stage5() + op_gap_lines(rep.records)
            + rep.artifacts() + rep.storage() + rep.appendix())
    if plots is None:  # the plots, written next to report.md and linked from it
        plots = write_plots(run, root=root, targets=targets, records=rep.records)
    body += markdown_links(plots)
    text = "\n".join(body) + "\n---\n\n" + rep.notes.render() + "\n"
    text = text.replace(f"{project_root()}/", "")  # paths under the project read relative to it, on any machine
    return atomic_write_text(store.dir / REPORT_FILE, text)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
