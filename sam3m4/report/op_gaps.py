"""Where a failed deployed gate broke: the per-operator numeric gaps (``<pte stem>.op_gaps.json``, written by
:mod:`sam3m4.export.op_gaps` at export) of every Stage 5 case with a failed gate, for the report and the page.

    lines = op_gap_lines(records)       # Markdown, appended after section 5 (empty when no deployed gate failed)
    html = op_gaps_html(records)        # the same table for the acceptance page

A case is ``<backend>/<mode>``; its gates are its own Stage 5 records and the on-device ones
(``<platform>/<backend>/<mode>``). A gap file that is missing or unreadable is a line saying so.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from sam3m4.results import schema
from sam3m4.results.store import Record

TOP_ROWS = 5


def failed_cases(records: list[Record]) -> dict[str, list[Record]]:
    """``<backend>/<mode>`` -> its latest failed Stage 5 gate records (host and on-device)."""
    latest: dict = {}
    for r in records:
        if r.stage == schema.STAGE5:
            latest[(r.subject, r.metric)] = r
    out: dict[str, list[Record]] = {}
    for (subject, _), r in latest.items():
        if r.passed is False:
            out.setdefault("/".join(subject.split("/")[-2:]), []).append(r)
    return out


def _gaps(records: list[Record], case: str) -> tuple[dict | None, str]:
    rec = None
    for r in records:
        if r.stage == schema.STAGE5 and r.subject == case and r.metric == schema.OP_GAP_SNR_DB:
            rec = r
    if rec is None or not rec.artifact:
        return None, (rec.note if rec is not None and rec.note else "no per-operator gaps recorded for this case: "
                      "they are opt-in (XNNPACK only: `sam3m4 export --op-gaps`, with `--bundle-k` > 0)")
    try:
        return json.loads(Path(rec.artifact).read_text(encoding="utf-8")), ""
    except (OSError, json.JSONDecodeError) as err:
        return None, f"{rec.artifact}: unreadable ({type(err).__name__})"


def _rows(gaps: dict):
    for method, g in gaps.get("methods", {}).items():
        if g.get("error"):
            yield method, None, g["error"]
        for row in g.get("rows", [])[:TOP_ROWS]:
            yield method, row, ""


def _snr(row: dict) -> str:
    return "-" if row.get("snr_db") is None else f"{row['snr_db']:.1f}"


def op_gap_lines(records: list[Record]) -> list[str]:
    """Markdown: for each case with a failed Stage 5 gate, the top operator rows by SNR fall (or why none)."""
    failed = failed_cases(records)
    if not failed:
        return []
    lines = ["### 배포 게이트 실패: 연산자별 수치 차이 (ExecuTorch Inspector)", ""]
    for case, recs in failed.items():
        gates = ", ".join(f"`{r.subject}` {r.metric}" for r in recs)
        gaps, why = _gaps(records, case)
        lines.append(f"- `{case}` 실패 게이트: {gates}")
        if gaps is None:
            lines += [f"  - {why}", ""]
            continue
        lines += ["", f"| method | eager ops | SNR dB | SNR 하락 dB | max abs err | source |", "|---|---|---:|---:|---:|---|"]
        for method, row, error in _rows(gaps):
            if row is None:
                lines.append(f"| {method} | {error} | | | | |")
                continue
            lines.append(f"| {method} | {', '.join(row['ops'][:3])} | {_snr(row)} | {row['introduced_db']:.1f} | "
                         f"{row['max_abs_error']:.3g} | {row.get('source') or '-'} |")
        lines += ["", f"  ({gaps.get('granularity', '')}; {gaps.get('seconds', 0):.1f} s)", ""]
    return lines


def op_gaps_html(records: list[Record]) -> str:
    """The same as :func:`op_gap_lines` as an HTML block ('' when no deployed gate failed)."""
    failed = failed_cases(records)
    if not failed:
        return ""
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    parts = ['<div class="op-gaps"><b>Deployed gate failed: per-operator gaps (ExecuTorch Inspector)</b>']
    for case, recs in failed.items():
        gaps, why = _gaps(records, case)
        parts.append(f"<p>{e(case)}: failed {e(', '.join(f'{r.subject} {r.metric}' for r in recs))}</p>")
        if gaps is None:
            parts.append(f'<p class="why">{e(why)}</p>')
            continue
        body = "".join(f"<tr><td>{e(m)}</td><td>{e(err or ', '.join(r['ops'][:3]))}</td><td>{'' if r is None else _snr(r)}"
                       f"</td><td>{'' if r is None else format(r['introduced_db'], '.1f')}</td><td>"
                       f"{'' if r is None else e(r.get('source') or '-')}</td></tr>" for m, r, err in _rows(gaps))
        parts.append("<table><tr><th>method</th><th>eager ops</th><th>SNR dB</th><th>SNR fall dB</th><th>source</th>"
                     f"</tr>{body}</table>")
    return "".join(parts) + "</div>"
