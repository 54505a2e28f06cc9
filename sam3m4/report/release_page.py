"""HTML for the top of the acceptance page: the verdict, the gate matrix and the plots, self-contained.

    html = release_section(release_matrix("demo"), write_plots("demo"))

The project's ``conftest.py`` hands this to pytest-html (``pytest_html_results_summary``); a few lines of inline
script move it from the summary to right under the page title, above the environment table, so the verdict and
the matrix are what a 1366x768 window shows first. Plots are embedded as base64 PNG (the page works from
``file://`` with nothing next to it); a plot that was not drawn is a line saying why. Inline CSS only, no
network, no console output.
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict

from sam3m4.report.op_gaps import op_gaps_html
from sam3m4.report.plots import Plot
from sam3m4.report.release import FAIL, GO, NOT_MEASURED, PASS, SPAN, UNSUPPORTED, VERDICT_RULE, ReleaseMatrix

SECTION_ID = "sam3m4-release"

_CSS = """
#sam3m4-release{color:#222;font-size:12px;margin:0 0 10px}
#sam3m4-release .verdict{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 12px;padding:6px 10px;
  border-radius:4px;margin-bottom:6px}
#sam3m4-release .verdict.go{background:#e8f5e9;border:2px solid #2e7d32}
#sam3m4-release .verdict.no-go{background:#ffebee;border:2px solid #c62828}
#sam3m4-release .verdict-word{font-size:22px;font-weight:bold}
#sam3m4-release .go .verdict-word{color:#1b5e20}
#sam3m4-release .no-go .verdict-word{color:#b71c1c}
#sam3m4-release .blocking{flex-basis:100%;margin:0;line-height:1.35}
#sam3m4-release table.gate-matrix{width:100%;table-layout:fixed;border-collapse:collapse}
#sam3m4-release .gate-matrix th,#sam3m4-release .gate-matrix td{border:1px solid #ddd;padding:2px 5px;
  white-space:nowrap;overflow:hidden;text-overflow:ellipsis;text-align:left;height:17px}
#sam3m4-release .gate-matrix thead th{background:#f2f2f2}
#sam3m4-release .gate-matrix .stage{font-weight:bold;background:#fafafa}
#sam3m4-release .cell b{margin-right:5px}
#sam3m4-release .cell.pass{background:#e8f5e9;color:#1b5e20}
#sam3m4-release .cell.fail{background:#ffebee;color:#b71c1c}
#sam3m4-release .cell.not-measured{background:#fff8e1;color:#7a5d00}
#sam3m4-release .cell.unsupported{background:#f3f3f3;color:#666}
#sam3m4-release .why{color:#555}
#sam3m4-release .accepted{color:#2e7d32}
#sam3m4-release .rule{color:#555;flex-basis:100%;margin:2px 0}
#sam3m4-release .foot{color:#666;margin:3px 0 8px}
#sam3m4-release .plots{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
#sam3m4-release figure{margin:0;width:440px}
#sam3m4-release figure img{width:100%;border:1px solid #ddd}
#sam3m4-release figcaption{color:#555;font-size:11px;overflow-wrap:anywhere}
#sam3m4-release .not-drawn{color:#555;margin:4px 0}
"""

# moves the section to right under the title and the "Report generated" line, above the environment table
_MOVE = ("<script>(function(){var s=document.getElementById('%s'),e=document.getElementById('environment-header');"
         "if(s&&e&&e.parentNode){e.parentNode.insertBefore(s,e);}})();</script>" % SECTION_ID)

_CLASS = {PASS: "pass", FAIL: "fail", NOT_MEASURED: "not-measured", UNSUPPORTED: "unsupported"}


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _blocking(matrix: ReleaseMatrix) -> str:
    """``fails (block the release): gate (columns); ...``, ``not measured (warns): ...`` (the accepted ones
    apart, with who accepted them and why), grouped by gate; then the rule in one line."""
    groups: dict[str, dict[str, list[str]]] = {"fail": defaultdict(list), "open": defaultdict(list),
                                               "accepted": defaultdict(list)}
    for b in matrix.blocking():
        groups["fail"][f"{b.row.stage} {b.row.label}"].append(b.column)
    for w in matrix.warnings():
        key = f"{w.row.stage} {w.row.label}" + (f" [{w.cell.accepted}]" if w.cell.accepted else "")
        groups["accepted" if w.cell.accepted else "open"][key].append(w.column)
    parts = []
    for key, status, word in (("fail", FAIL, "fails (blocks the release)"),
                              ("open", NOT_MEASURED, "not measured (warns; not accepted)"),
                              ("accepted", NOT_MEASURED, "not measured, accepted for this release")):
        if groups[key]:
            items = "; ".join(f"{_e(gate)} ({_e(', '.join(cols))})" for gate, cols in groups[key].items())
            parts.append(f'<p class="blocking {_CLASS[status]}" data-group="{key}"><b>{word}:</b> {items}</p>')
    parts.append(f'<p class="rule">{_e(VERDICT_RULE)}</p>')
    return "".join(parts)


def _cell(cell, colspan: int = 1) -> str:
    tip = "; ".join(t for t in (cell.reason, cell.subject and f"subject {cell.subject}", cell.provenance) if t)
    value = f"<b>{_e(cell.shown)}</b>" if cell.value is not None else ""
    reason = cell.reason  # "not measured on a phone here: ..." after the status word reads without the repeat
    if reason.lower().startswith(cell.status):
        reason = reason[len(cell.status):].lstrip(" :")
    why = f' <span class="why">{_e(reason)}</span>' if reason else ""
    if cell.accepted:
        why += f' <span class="accepted">({_e(cell.accepted)})</span>'
        tip = f"{tip}; {cell.accepted}"
    span = f' colspan="{colspan}"' if colspan > 1 else ""
    return (f'<td class="cell {_CLASS[cell.status]}" data-status="{_e(cell.status)}"{span} title="{_e(tip)}">'
            f"{value}{_e(cell.status)}{why}</td>")


def matrix_html(matrix: ReleaseMatrix) -> str:
    """The verdict and the gate matrix."""
    counts = " &middot; ".join(f"{matrix.count(s)} {s}" for s in (FAIL, NOT_MEASURED, PASS, UNSUPPORTED))
    kind = "go" if matrix.verdict == GO else "no-go"
    out = [f'<div class="verdict {kind}" id="release-verdict"><span class="verdict-word">{_e(matrix.verdict)}</span>'
           f'<span>release verdict for run <b>{_e(matrix.run)}</b>: {counts}</span>{_blocking(matrix)}</div>']
    heads = "".join(f"<th>{_e(c.label)} <small>{_e(matrix.modes.get(c.key) or 'no export')}</small></th>"
                    for c in matrix.columns)
    out.append('<table class="gate-matrix" id="gate-matrix"><colgroup><col style="width:74px">'
               '<col style="width:250px"><col style="width:76px"><col><col><col></colgroup>'
               f"<thead><tr><th>stage</th><th>gate</th><th>target</th>{heads}</tr></thead><tbody>")
    stages = [r.stage for r in matrix.rows]
    for i, row in enumerate(matrix.rows):
        stage = (f'<td class="stage" rowspan="{stages.count(row.stage)}">{_e(row.stage)}</td>'
                 if i == stages.index(row.stage) else "")
        if SPAN in row.cells:
            cells = _cell(row.cells[SPAN], colspan=len(matrix.columns))
        else:
            cells = "".join(_cell(row.cells[c.key]) for c in matrix.columns)
        out.append(f'<tr data-gate="{_e(row.gate)}">{stage}<td title="{_e(row.gate)}">{_e(row.label)}</td>'
                   f"<td>{_e(row.target or 'not in targets file')}</td>{cells}</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="foot">Judged by {_e(matrix.targets_line or "the targets file")}. A cell spanning the '
               "columns holds for every target; hover a cell for its reason and provenance.</p>")
    return "".join(out)


def plots_html(plots: list[Plot]) -> str:
    """Drawn plots as embedded PNGs with their source; the others as one line each saying why not."""
    figures, missing = [], []
    for p in plots:
        if p.path is None:
            missing.append(f'<p class="not-drawn" data-plot="{_e(p.name)}"><b>{_e(p.title)}</b>: not drawn: '
                           f"{_e(p.note)}</p>")
            continue
        data = base64.b64encode(p.path.read_bytes()).decode("ascii")
        figures.append(f'<figure data-plot="{_e(p.name)}"><img alt="{_e(p.title)}" src="data:image/png;base64,{data}">'
                       f"<figcaption><b>{_e(p.title)}</b>: {_e(p.note)}</figcaption></figure>")
    return f'<div class="plots">{"".join(figures)}</div>{"".join(missing)}'


def release_section(matrix: ReleaseMatrix, plots: list[Plot], records=None) -> str:
    """The whole block for pytest-html's summary: style, verdict, matrix, plots and the script that lifts it;
    with the run's ``records``, the per-operator gaps of each case whose deployed gate failed
    (:func:`sam3m4.report.op_gaps.op_gaps_html`) under the matrix."""
    gaps = op_gaps_html(records) if records else ""
    return (f'<section id="{SECTION_ID}"><style>{_CSS}</style>{matrix_html(matrix)}{gaps}{plots_html(plots)}'
            '</section>' + _MOVE)
