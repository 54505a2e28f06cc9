"""The report's deployed-accuracy parts: Stage 4's eager vs deployed table, runtime Avg ms and per-backend
decisions, and the Stage 5 list of which ``.pte`` were scored where (the template's own tables stay as they are).

Called by :mod:`sam3m4.report.markdown` with its report object (``rep``: ``records``, ``find``, ``cell``,
``notes``, ``provenance``). Reads, all from the results store:

* stage4 ``<mode>``: ``miou``, ``avg_ms`` (host eager); stage4 ``decision/<backend>``: ``chosen_mode`` (its note
  names the ``.pte``, its artifact is ``decision.json``);
* stage5 ``<backend>/<mode>``: ``miou`` / ``presence_f1`` / ``saco_cgf1`` / ``saco_il_mcc`` / ``jf`` of the ``.pte``
  through the ExecuTorch runtime, ``deployed_miou_drop``, ``export_miou_gap``, ``host_image_latency_ms`` (the
  runtime p50 that replaces host eager in the Avg ms column), ``pte_mb`` (the file), ``shipped``.
"""

from __future__ import annotations

from pathlib import Path

from sam3m4.results import schema

BACKENDS = ("coreml", "qnn", "xnnpack")
SCORED = (schema.MIOU, schema.PRESENCE_F1, schema.SACO_CGF1, schema.SACO_IL_MCC, schema.JF,
          schema.DEPLOYED_MIOU_DROP, schema.EXPORT_MIOU_GAP)


def _subjects(rep, mode: str | None = None) -> list[str]:
    """``<backend>/<mode>`` subjects with an exported ``.pte`` (a ``pte_mb`` record), in backend order."""
    found = {r.subject for r in rep.records if r.stage == schema.STAGE5 and r.metric == schema.PTE_MB
             and r.subject.count("/") == 1 and r.value is not None}
    return [f"{b}/{m}" for b in BACKENDS for m in ([mode] if mode else sorted({s.split("/")[1] for s in found}))
            if f"{b}/{m}" in found]


def eager_vs_deployed(rep, rows) -> list[str]:
    """Below the template's Stage 4 table: for each exported mode, its eager mIoU / Presence F1 next to each
    ``.pte``'s through the ExecuTorch runtime on the same val pairs (``rows``: (label, mode) of the table)."""
    lines = ["", "Avg ms: the exported program's runtime p50 where Stage 5 measured one, else host eager (said so). "
             "Eager (torch + torchao) vs deployed (the .pte through the ExecuTorch runtime, same val pairs):", "",
             "| Mode | .pte | mIoU (eager) | mIoU (deployed) | Presence F1 (eager) | Presence F1 (deployed) |",
             "|---|---|---:|---:|---:|---:|"]
    n = len(lines)
    for label, mode in rows:
        for subject in _subjects(rep, mode):
            pte = rep.find(schema.STAGE5, subject, schema.PTE_MB)
            name = Path(pte.artifact).name if pte.artifact else subject
            scored = rep.find(schema.STAGE5, subject, schema.MIOU)
            if scored is None or scored.value is None:
                gate = rep.find(schema.STAGE5, subject, schema.DEPLOYED_MIOU_DROP)
                why = gate.note if gate is not None and gate.note else f"no deployed accuracy record for {subject}"
                dep = ["-" + rep.notes.ref(why)] * 2
            else:
                dep = [rep.cell(schema.STAGE5, subject, m) for m in (schema.MIOU, schema.PRESENCE_F1)]
            lines.append(f"| {label} | `{name}` | {rep.cell(schema.STAGE4, mode, schema.MIOU)} | {dep[0]} | "
                         f"{rep.cell(schema.STAGE4, mode, schema.PRESENCE_F1)} | {dep[1]} |")
    if len(lines) == n:
        lines.append("| - | no .pte exported in this run | - | - | - | - |")
    return lines


def avg_ms_cell(rep, mode: str) -> str:
    """The exported program's runtime p50 (XNNPACK on this host) where measured, else host eager, said so."""
    rec = next((r for s in _subjects(rep, mode) for r in [rep.find(schema.STAGE5, s, schema.HOST_IMAGE_LATENCY_MS)]
                if r is not None and r.value is not None), None)
    if rec is not None:
        return rep.cell(schema.STAGE5, rec.subject, rec.metric) + f" (`{rec.subject.split('/')[0]}` .pte p50)"
    eager = rep.find(schema.STAGE4, mode, schema.AVG_MS)
    return rep.cell(schema.STAGE4, mode, schema.AVG_MS) + (" (host eager)" if eager is not None else "")


def decision_lines(rep) -> list[str]:
    """One bullet per backend: the mode Stage 4 chose and the ``.pte`` it ships (Stage 5's rows name the same)."""
    recs = [rep.find(schema.STAGE4, schema.decision_subject(b), schema.CHOSEN_MODE) for b in BACKENDS]
    recs = [r for r in recs if r is not None]
    if not recs:
        return []
    where = recs[0].artifact or "decision.json"
    items = [f"{r.subject.split('/')[-1]} `{r.value}` -> `{r.note}`" + rep.notes.ref(rep.provenance(r)) for r in recs]
    return [f"- 백엔드별 채택 모드 (`{Path(where).name}`): " + "; ".join(items)]


def stage5_lines(rep) -> list[str]:
    """Which ``.pte`` were scored where: one row per exported case, its file, why it shipped, and its scores."""
    subjects = _subjects(rep)
    if not subjects:
        return []
    lines = ["", "### 배포 .pte 정확도 (ExecuTorch runtime, Stage 4와 같은 val pairs)", "",
             "| .pte | 선정 | 채점 위치 | mIoU | Presence F1 | cgF1 | IL_MCC | J&F | mIoU 하락 vs fp16 (pt) | "
             "eager 대비 차이 (pt) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for subject in subjects:
        pte = rep.find(schema.STAGE5, subject, schema.PTE_MB)
        name = Path(pte.artifact).name if pte.artifact else subject
        shipped = rep.find(schema.STAGE5, subject, schema.SHIPPED)
        why = {schema.SHIPPED_DECISION: "Stage 4 결정", schema.SHIPPED_EXTRA: "추가 (config)"}.get(
            shipped.value if shipped else None, "-")
        miou = rep.find(schema.STAGE5, subject, schema.MIOU)
        if miou is not None and miou.value is not None:
            where = f"this host, sha256 `{(miou.sha256 or '')[:12]}`"
        else:
            gate = rep.find(schema.STAGE5, subject, schema.DEPLOYED_MIOU_DROP)
            where = "not scored" + rep.notes.ref(gate.note if gate is not None and gate.note else
                                                 f"no deployed accuracy record for {subject}")
        cells = [rep.cell(schema.STAGE5, subject, m) if rep.find(schema.STAGE5, subject, m) is not None else "-"
                 for m in SCORED]
        lines.append(f"| `{name}` | {why} | {where} | " + " | ".join(cells) + " |")
    return lines + [""]
