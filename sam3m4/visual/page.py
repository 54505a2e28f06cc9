"""The Visual QA page: one self-contained ``index.html`` that works from ``file://`` with no network.

The grid shows, per (image, prompt) pair, the teacher's and the student's overlay thumbnails side by side
(``<img loading="lazy">`` on JPEG files in the run folder, each linking to its full-size PNG) with
presence, instance counts and the teacher-vs-student mask IoU; a prompt filter hides the other cards.
The checklist form is pre-filled with the automatic suggestions (marked "auto" until edited), persists in
``localStorage`` and downloads ``checklist.json`` (Blob + ``<a download>``) in the schema of
:mod:`sam3m4.visual.checklist`. All CSS and JS are inline; every path in the page is relative.
"""

from __future__ import annotations

import html
import json

from sam3m4.visual.checklist import FORMAT, ITEMS, PairResult

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 24px 48px;color:#222}
h1{font-size:22px;margin:18px 0 8px}h2{font-size:18px;margin:24px 0 8px}
table.meta td{padding:1px 10px 1px 0;vertical-align:top}code{font-size:12px;background:#f3f3f3;padding:0 3px}
table.check{border-collapse:collapse;width:100%;max-width:1200px}
table.check td,table.check th{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
table.check td:first-child{width:28%}table.check td:nth-child(2){width:10%;white-space:nowrap}
table.check textarea{width:100%;min-height:52px;box-sizing:border-box;font:inherit}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;color:#fff}
.badge.auto{background:#888}.badge.human{background:#2a7}
.hint{color:#666;font-size:12px}#status{font-weight:600}
.toolbar{margin:10px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;margin:0;background:#fafafa}
.card[hidden]{display:none}.card figcaption{font-weight:600;margin-bottom:6px;word-break:break-all}
.pair{display:flex;gap:8px}.pair div{flex:1;text-align:center}.pair img{max-width:100%;height:auto;background:#eee}
.card table{width:100%;font-size:12px;margin-top:4px}.card td{padding:0 4px}.num{text-align:right}
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sam3m4-data").textContent);
  var KEY = "sam3m4-visual-checklist:" + data.meta.run + ":" + data.meta.index_html;
  var keys = Object.keys(data.labels);
  var items = {}, reviewer = document.getElementById("reviewer"), status = document.getElementById("status");
  function copy(o) { return JSON.parse(JSON.stringify(o)); }
  function stored() {
    try { return JSON.parse(window.localStorage.getItem(KEY) || "null"); } catch (e) { return null; }
  }
  function persist() {
    try { window.localStorage.setItem(KEY, JSON.stringify({reviewer: reviewer.value, items: items})); }
    catch (e) { status.textContent = "localStorage unavailable: use Save checklist to keep your edits"; }
  }
  function render() {
    keys.forEach(function (k) {
      var it = items[k];
      document.querySelectorAll('input[name="verdict-' + k + '"]').forEach(function (r) {
        r.checked = r.value === it.verdict;
      });
      document.getElementById("memo-" + k).value = it.memo;
      var b = document.getElementById("badge-" + k);
      b.textContent = it.source; b.className = "badge " + it.source;
    });
  }
  function edited(k) {
    items[k].source = "human";
    var b = document.getElementById("badge-" + k);
    b.textContent = "human"; b.className = "badge human";
    persist();
  }
  var saved = stored();
  items = copy(data.initial);
  keys.forEach(function (k) {
    if (saved && saved.items && saved.items[k] && saved.items[k].source === "human") { items[k] = saved.items[k]; }
  });
  reviewer.value = (saved && saved.reviewer) || data.reviewer || "";
  render();
  keys.forEach(function (k) {
    document.querySelectorAll('input[name="verdict-' + k + '"]').forEach(function (r) {
      r.addEventListener("change", function () { if (r.checked) { items[k].verdict = r.value; edited(k); } });
    });
    document.getElementById("memo-" + k).addEventListener("input", function (e) {
      items[k].memo = e.target.value; edited(k);
    });
  });
  reviewer.addEventListener("input", persist);
  document.getElementById("reset").addEventListener("click", function () {
    items = copy(data.auto); persist(); render(); status.textContent = "reset to the automatic suggestions";
  });
  document.getElementById("save").addEventListener("click", function () {
    var name = reviewer.value.trim();
    if (!name) { status.textContent = "type the reviewer's name first"; reviewer.focus(); return; }
    var out = {format: data.format, run: data.meta.run, reviewer: name, saved_at: new Date().toISOString(),
               index_html: data.meta.index_html, manifest: data.meta.manifest, prompts: data.meta.prompts,
               items: items};
    persist();
    var blob = new Blob([JSON.stringify(out, null, 2) + "\n"], {type: "application/json"});
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "checklist.json";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
    status.textContent = "downloaded checklist.json: move it to " + data.checklist_path;
  });
  var filter = document.getElementById("prompt-filter"), shown = document.getElementById("shown");
  var cards = document.querySelectorAll(".card");
  filter.addEventListener("change", function () {
    var n = 0;
    cards.forEach(function (c) {
      c.hidden = filter.value !== "" && c.getAttribute("data-prompt") !== filter.value;
      if (!c.hidden) { n++; }
    });
    shown.textContent = n + " of " + cards.length + " pairs";
  });
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _json_for_script(obj) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` (escaped as \\u00XX inside strings)."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _card(p: PairResult, thumb_sizes: dict[str, tuple[int, int]]) -> str:
    iou = "both empty" if p.iou is None else f"{p.iou:.3f}"
    sides = []
    for who in ("teacher", "student"):
        w, h = thumb_sizes[p.files[f"{who}_thumb"]]
        sides.append(f'<div><a href="{_e(p.files[who])}" target="_blank">'
                     f'<img loading="lazy" src="{_e(p.files[who + "_thumb"])}" width="{w}" height="{h}" '
                     f'alt="{who} overlay"></a><br>{who}</div>')
    return (f'<figure class="card" data-prompt="{_e(p.prompt)}"><figcaption>{_e(p.image)} &middot; '
            f'&ldquo;{_e(p.prompt)}&rdquo;</figcaption><div class="pair">{"".join(sides)}</div>'
            '<table><tr><td></td><td class="num">presence</td><td class="num">instances</td></tr>'
            f'<tr><td>teacher</td><td class="num">{p.teacher_presence:.3f}</td>'
            f'<td class="num">{p.teacher_count}</td></tr>'
            f'<tr><td>student</td><td class="num">{p.student_presence:.3f}</td>'
            f'<td class="num">{p.student_count}</td></tr>'
            f'<tr><td>mask IoU</td><td class="num" colspan="2">{iou}</td></tr></table></figure>')


def render_page(meta: dict, pairs: list[PairResult], prompts: list[str], auto: dict[str, dict],
                initial: dict[str, dict] | None = None, reviewer: str = "",
                thumb_sizes: dict[str, tuple[int, int]] | None = None) -> str:
    """The page's HTML text.

    ``meta``: ``run``, ``index_html``, ``manifest``, ``prompts`` (paths as strings, stored in the saved
    checklist), ``checklist_path`` and header rows ``header`` (list of (label, value)). ``auto``: the
    suggestions of :func:`~sam3m4.visual.checklist.suggest`; ``initial``: the items the form starts from
    (default ``auto``; e.g. a reviewer's earlier checklist). ``thumb_sizes``: thumbnail path -> (w, h).
    """
    initial = initial or auto
    thumb_sizes = thumb_sizes or {}
    data = {"format": FORMAT, "meta": {k: meta[k] for k in ("run", "index_html", "manifest", "prompts")},
            "checklist_path": meta["checklist_path"], "labels": {k: v[0] for k, v in ITEMS.items()},
            "auto": auto, "initial": initial, "reviewer": reviewer}
    header = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta["header"])
    rows = []
    for key, (label, hint) in ITEMS.items():
        radios = "".join(f'<label><input type="radio" name="verdict-{key}" value="{v}"> {v}</label> '
                         for v in ("Pass", "Fail"))
        rows.append(f'<tr id="item-{key}"><td><b>{_e(label)}</b><br><span class="hint">{_e(hint)}</span></td>'
                    f'<td>{radios}<br><span id="badge-{key}" class="badge auto">auto</span></td>'
                    f'<td><textarea id="memo-{key}" aria-label="memo {key}"></textarea></td></tr>')
    options = "".join(f'<option value="{_e(p)}">{_e(p)}</option>' for p in prompts)
    cards = "\n".join(_card(p, thumb_sizes) for p in pairs)
    return f"""<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sam3m4 visual QA: {_e(meta['run'])}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<h1>3) 사용자 시각 검증 (Visual QA): run <code>{_e(meta['run'])}</code></h1>
<table class="meta">{header}</table>
<h2>관찰 체크리스트</h2>
<p class="hint">Pre-filled with automatic suggestions (<span class="badge auto">auto</span>) computed from the
predictions below; an item you change becomes <span class="badge human">human</span>. Edits persist in this
browser. <b>Save checklist</b> downloads <code>checklist.json</code>: put it at
<code>{_e(meta['checklist_path'])}</code>, then run <code>sam3m4 report --run {_e(meta['run'])}</code>.</p>
<p><label>Reviewer: <input id="reviewer" type="text" size="30" placeholder="your name"></label></p>
<table class="check"><tr><th>항목</th><th>Pass/Fail</th><th>메모</th></tr>
{''.join(rows)}
</table>
<div class="toolbar"><button id="save" type="button">Save checklist</button>
<button id="reset" type="button">Reset to auto suggestions</button><span id="status"></span></div>
<h2>Teacher vs student</h2>
<div class="toolbar"><label>Prompt: <select id="prompt-filter"><option value="">all prompts</option>{options}
</select></label><span id="shown">{len(pairs)} of {len(pairs)} pairs</span>
<span class="hint">thumbnails link to full-size overlays; each instance has its own colour</span></div>
<div class="grid">
{cards}
</div>
<script type="application/json" id="sam3m4-data">{_json_for_script(data)}</script>
<script>{_JS}</script>
</body>
</html>
"""
