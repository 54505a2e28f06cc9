"""The report's plots: what people look at rather than read, drawn with matplotlib (Agg) from a run's records.

    plots = write_plots("demo")          # reports/demo/plots/<name>.png, one Plot per kind, drawn or not
    [p.title for p in plots if p.path]

Each plot reads only what the run recorded; one whose data is missing is not drawn (and an old PNG of it is
removed), and its :class:`Plot` says why. Never an empty plot.

========================  ========================================================================================
``quant_tradeoff``        Stage 4: size (MB) vs mIoU per quant mode, the band of the targets file's mIoU drop
                          below fp16 (``quant_miou_drop``)
``latency``               Stage 5: image latency per ``.pte``, p50 bar and p90 tick (host ``host_image_latency_ms``
                          / ``host_image_latency_p90_ms``; on-device ``image_latency_ms``), target lines
``loss_curves``           Phase 1 / Phase 2 / video training loss (and validation loss) from the CSV logs the run's
                          manifest lists (``artifacts``/``log`` records: ``logs/distillation/phase{1,2}[_val].csv``,
                          ``video.csv``)
``pipeline_timeline``     each pipeline stage's last start and end (``reports/<run>/pipeline_state.json``)
``phrase_miou``           teacher vs student mIoU per noun phrase (Stage 3, ``miou/phrase:<phrase>`` records)
``reliability``           presence reliability diagram (15 bins) of the teacher, the Phase 2 student and the shipped
                          mode, from their per-pair scores files (``presence_scores`` records)
========================  ========================================================================================
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from sam3m4.errors import DataFormatError
from sam3m4.eval.by_phrase import phrase_of
from sam3m4.eval.calibration import read_pair_scores
from sam3m4.metrics.calibration import ece, reliability as reliability_bins
from sam3m4.fileio import atomic_path
from sam3m4.paths import DISTILL_LOG_DIR, PIPELINE_STATE, REPORTS_ROOT
from sam3m4.results import schema
from sam3m4.results.store import Record, ResultsStore
from sam3m4.results.targets import Target, display_path
from sam3m4.schemas import load_file
from sam3m4.schemas.pipeline import StateTimings

PLOTS_DIR = "plots"
STATE_FILE = PIPELINE_STATE
LOSS_LOGS = (("Phase 1", "phase1"), ("Phase 2", "phase2"), ("video", "video"))


@dataclass(frozen=True)
class Plot:
    """One plot of a run: drawn (``path``) or not (``path`` None, ``note`` says why)."""

    name: str
    """File stem: ``quant_tradeoff`` -> ``reports/<run>/plots/quant_tradeoff.png``."""
    title: str
    path: Path | None
    """The PNG written; None when the data is missing."""
    note: str
    """Where the data came from (drawn), or why it was not drawn."""


class _Missing(Exception):
    """The data a plot needs is not in the run: the message says what is missing and how to get it."""


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _latest(records: list[Record]) -> dict[tuple[str, str, str], Record]:
    out = {}
    for rec in records:
        out[(rec.stage, rec.subject, rec.metric)] = rec
    return out


def _figure(width: float = 6.4, height: float = 3.4):
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas by default

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


# --- the plots ---------------------------------------------------------------------------------------------------
def quant_tradeoff(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Stage 4 size vs mIoU per mode; the band is the targets file's allowed mIoU drop below fp16."""
    latest = _latest(records)
    modes = []
    for (stage, subject, metric), rec in latest.items():
        if stage == schema.STAGE4 and metric == schema.SIZE_MB and _numeric(rec.value):
            miou = latest.get((schema.STAGE4, subject, schema.MIOU))
            if miou is not None and _numeric(miou.value):
                modes.append((subject, rec.value, 100 * miou.value, latest.get((schema.STAGE4, subject, schema.MIOU_DROP))))
    if not modes:
        raise _Missing(f"no Stage 4 size_mb and miou records in run `{run}` (run `sam3m4 quantize --mode compare "
                       f"--run {run}`)")
    fig = _figure()
    ax = fig.add_subplot()
    fp16 = next((m for m in modes if m[0] == "fp16"), None)
    target = targets.get("quant_miou_drop")
    if fp16 is not None and target is not None:
        band = target.value if target.basis == "absolute" else fp16[2] * target.value / 100
        ax.axhspan(fp16[2] - band, fp16[2], color="#2e7d32", alpha=0.12,
                   label=f"within {target.describe()} of fp16 ({target.basis})")
    chosen = latest.get((schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE))
    colours = ["black", "#1565c0", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#558b2f", "#4e342e"]
    for i, (mode, size, miou, drop) in enumerate(modes):
        is_chosen = chosen is not None and chosen.value == mode
        failed = drop is not None and drop.passed is False
        ax.scatter([size], [miou], s=120 if is_chosen else 40, color=colours[i % len(colours)], zorder=3,
                   marker="*" if is_chosen else "x" if failed else "o",
                   label=f"{mode}{' (chosen)' if is_chosen else ''}{' FAILS the gate' if failed else ''}: "
                         f"{size:.2f} MB, {miou:.1f}%")
    ax.set_xlabel("size (MB, deployable weights)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"Quantization trade-off, run {run}", fontsize=10)
    fig.legend(fontsize=7, loc="outside right upper")
    ax.grid(alpha=0.3)
    n = latest.get((schema.STAGE4, "fp16", schema.MIOU))
    return fig, f"Stage 4 records of run `{run}`: {len(modes)} modes" + (f"; {n.provenance}" if n else "")


def latency(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Image latency per ``.pte``: the host's p50 bar and p90 tick, phones' imported numbers, the budgets."""
    latest = _latest(records)
    bars = []  # (label, p50, p90 or None, kind)
    for (stage, subject, metric), rec in latest.items():
        if stage != schema.STAGE5 or not _numeric(rec.value):
            continue
        if metric == schema.HOST_IMAGE_LATENCY_MS and subject.count("/") == 1:
            p90 = latest.get((stage, subject, schema.HOST_IMAGE_LATENCY_P90_MS))
            name = Path(rec.artifact).name if rec.artifact else subject
            bars.append((f"{name} (host)", rec.value, p90.value if p90 is not None and _numeric(p90.value) else None))
        elif metric == schema.IMAGE_LATENCY_MS and subject.count("/") == 2:
            name = Path(rec.artifact).name if rec.artifact else subject
            bars.append((f"{name} ({subject.split('/')[0]})", rec.value, None))
    if not bars:
        raise _Missing(f"no image latency recorded in run `{run}` (host: `sam3m4 export --backend xnnpack`; phones: "
                       "`sam3m4 device import`)")
    fig = _figure(height=1.4 + 0.4 * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))
    ax.barh(ys, [b[1] for b in bars], color="#1565c0", alpha=0.8, height=0.5, label="p50")
    p90 = [(y, b[2]) for y, b in zip(ys, bars) if b[2] is not None]
    if p90:
        ax.scatter([v for _, v in p90], [y for y, _ in p90], marker="|", s=400, color="black", zorder=3, label="p90")
    for y, (_, p50, p90_ms) in zip(ys, bars):
        ax.annotate(f"p50 {p50:.2f}" + (f" / p90 {p90_ms:.2f}" if p90_ms is not None else "") + " ms",
                    (max(p50, p90_ms or 0), y), textcoords="offset points", xytext=(6, 0), va="center", fontsize=7)
    lines = [(k, s) for k, s in (("host_xnnpack_latency_ms", ":"), (schema.IMAGE_LATENCY_MS, "--")) if k in targets]
    for key, style in lines:
        ax.axvline(targets[key].value, color="#c62828", linestyle=style, linewidth=1,
                   label=f"target {key} {targets[key].describe()}")
    values = [b[1] for b in bars] + [b[2] for b in bars if b[2]] + [targets[k].value for k, _ in lines]
    if max(values) / max(min(values), 1e-9) > 20:  # milliseconds next to a 100 ms budget: a log axis shows both
        ax.set_xscale("log")
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=8)
    ax.set_ylim(-0.6, len(bars) - 0.4)
    ax.set_xlabel("image latency (ms)")
    ax.set_title(f"Image latency per .pte, run {run}", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    missing = [b[0] for b in bars if b[2] is None and b[0].endswith("(host)")]
    return fig, f"Stage 5 records of run `{run}`" + (f"; p90 not recorded for {', '.join(missing)}" if missing else "")


def _read_curve(path: Path, column: str) -> list[tuple[float, float]]:
    """``(step, value)`` rows of a step CSV with finite values; unreadable rows are skipped."""
    points = []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            try:
                step, value = float(row["step"]), float(row[column])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(step) and math.isfinite(value):
                points.append((step, value))
    return points


def loss_curves(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Training (and validation) loss per step of the logs the run's manifest lists; a phase without one is named."""
    logs = {Path(r.artifact).name: Path(r.artifact) for r in records
            if r.stage == schema.ARTIFACTS and r.subject == "log" and r.artifact and r.artifact.endswith(".csv")}
    panels, absent = [], []
    for label, stem in LOSS_LOGS:
        train_path, val_path = logs.get(f"{stem}.csv"), logs.get(f"{stem}_val.csv")
        train = _read_curve(train_path, "loss") if train_path is not None and train_path.is_file() else []
        val = _read_curve(val_path, "val_loss") if val_path is not None and val_path.is_file() else []
        if train or val:
            panels.append((label, train, val, train_path or val_path))
        else:
            absent.append(label)
    if not panels:
        raise _Missing(f"run `{run}` lists no training loss log (the pipeline's manifest records "
                       f"{DISTILL_LOG_DIR}/phase1.csv, phase2.csv, video.csv after the acceptance stage)")
    fig = _figure(width=3.0 * len(panels) + 0.6, height=2.8)
    for i, (label, train, val, path) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        if train:
            ax.plot([s for s, _ in train], [v for _, v in train], linewidth=1, label="train loss")
        if val:
            ax.plot([s for s, _ in val], [v for _, v in val], marker="o", markersize=3, linewidth=1, label="val loss")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    used = ", ".join(f"`{p}`" for _, _, _, p in panels)
    return fig, f"training logs {used}" + (f"; no log for {', '.join(absent)}" if absent else "")


def _utc(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def pipeline_timeline(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Each stage's last start and end from the pipeline state (older states: end minus its seconds)."""
    path = Path(display_path(run_dir / STATE_FILE))
    if not path.is_file():
        raise _Missing(f"no {path}: run `{run}` was not made by `sam3m4 pipeline`")
    try:
        stages = load_file(path, StateTimings).stages
    except DataFormatError as err:
        raise _Missing(f"unreadable: {err}") from None
    spans = []
    for name, st in stages.items():
        if st.finished is None or (st.started is None and st.seconds is None):
            continue
        end = _utc(st.finished)
        start = _utc(st.started) if st.started else end - _dt.timedelta(seconds=st.seconds)
        spans.append((name, start, end, st.rc))
    if not spans:
        raise _Missing(f"{path}: no stage with a start and an end yet")
    spans.sort(key=lambda s: (s[1], s[2]))
    t0 = spans[0][1]
    fig = _figure(height=1.0 + 0.28 * len(spans))
    ax = fig.add_subplot()
    for y, (name, start, end, rc) in enumerate(spans):
        left = (start - t0).total_seconds() / 60
        width = max((end - start).total_seconds() / 60, 0.02)
        ax.barh(y, width, left=left, color="#2e7d32" if rc == 0 else "#ef6c00", height=0.6)
        ax.text(left + width, y, f" {(end - start).total_seconds():.0f} s", va="center", fontsize=7)
    ax.set_yticks(range(len(spans)), [s[0] for s in spans], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"minutes since {t0:%Y-%m-%d %H:%M} UTC (each stage's last run; orange: non-zero exit)")
    ax.set_title(f"Pipeline timeline, run {run}", fontsize=10)
    ax.margins(x=0.08)
    ax.grid(axis="x", alpha=0.3)
    return fig, f"`{path}`"


def phrase_miou(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Teacher and Phase 2 student mIoU per noun phrase, phrases by the teacher's mIoU."""
    latest = _latest(records)
    by = {schema.TEACHER: {}, schema.STUDENT_PHASE2: {}}
    for (stage, subject, metric), rec in latest.items():
        phrase = phrase_of(metric)
        if stage == schema.STAGE3 and phrase is not None and subject in by and _numeric(rec.value):
            by[subject][phrase] = 100 * rec.value
    phrases = sorted(set(by[schema.TEACHER]) | set(by[schema.STUDENT_PHASE2]), key=lambda p: -by[schema.TEACHER].get(p, -1))
    if not phrases:
        raise _Missing(f"no per-phrase mIoU in run `{run}` (the Stage 3 gates record it: "
                       f"`pytest acceptance/test_stage3.py --run {run}`)")
    fig = _figure(height=1.2 + 0.22 * len(phrases))
    ax = fig.add_subplot()
    ys = list(range(len(phrases)))
    for offset, (subject, label, colour) in ((-0.2, (schema.TEACHER, "teacher", "#6d4c41")),
                                             (0.2, (schema.STUDENT_PHASE2, "student (Phase 2)", "#1565c0"))):
        pts = [(y + offset, by[subject][p]) for y, p in zip(ys, phrases) if p in by[subject]]
        if pts:
            ax.barh([y for y, _ in pts], [v for _, v in pts], height=0.4, color=colour, label=label)
    ax.set_yticks(ys, phrases, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mIoU (%)")
    ax.set_title(f"Teacher vs student mIoU per phrase, run {run}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    any_rec = next(r for (s, _, m), r in latest.items() if s == schema.STAGE3 and phrase_of(m) is not None)
    return fig, f"Stage 3 records of run `{run}`: {len(phrases)} phrases; {any_rec.provenance}"


def shipped_subject(records: list[Record]) -> str | None:
    """The Stage 4 mode that ships: the decision's ``chosen_mode``, else the mode the plateau gate judged."""
    latest = _latest(records)
    chosen = latest.get((schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE))
    if chosen is not None and chosen.value:
        return str(chosen.value)
    gated = [r for r in records if r.stage == schema.STAGE4 and r.metric == schema.PRESENCE_F1_GAP]
    return gated[-1].subject if gated else None


def reliability(records: list[Record], targets: dict[str, Target], run: str, run_dir: Path):
    """Presence reliability diagram: per 15-bin mean score vs fraction present, one line per model, the diagonal."""
    latest = _latest(records)
    shipped = shipped_subject(records)
    models = [(schema.STAGE3, schema.TEACHER, "teacher", "#6d4c41"),
              (schema.STAGE3, schema.STUDENT_PHASE2, "student (Phase 2)", "#1565c0")]
    if shipped is not None:
        models.append((schema.STAGE4, shipped, f"shipped ({shipped})", "#e65100"))
    found = [(latest[(st, subj, schema.PRESENCE_SCORES)], label, colour) for st, subj, label, colour in models
             if (st, subj, schema.PRESENCE_SCORES) in latest and latest[(st, subj, schema.PRESENCE_SCORES)].artifact]
    if not found:
        raise _Missing(f"no presence scores in run `{run}` (the Stage 3 and Stage 4 gates record them: "
                       f"`pytest acceptance/test_stage3.py acceptance/test_stage4.py --run {run}`)")
    fig = _figure(width=5.2, height=4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", linewidth=1, label="perfect calibration")
    sources = []
    for rec, label, colour in found:
        path = Path(rec.artifact)
        path = path if path.is_file() else run_dir / "calibration" / path.name  # a run folder moved as a whole
        scores, labels, _ = read_pair_scores(path)
        bins = reliability_bins(scores, labels)
        used = bins.count > 0
        ax.plot(bins.mean_score[used], bins.positive_rate[used], marker="o", markersize=4,
                color=colour, label=f"{label}: ECE {ece(scores, labels):.3f}, {len(scores)} pairs")
        sources.append(f"{rec.stage} {rec.subject}: `{display_path(path)}`")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("presence score (bin mean, 15 equal-width bins)")
    ax.set_ylabel("fraction of pairs present")
    ax.set_title(f"Presence reliability, run {run}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig, "per-pair presence scores: " + "; ".join(sources)


PLOTS = (("quant_tradeoff", "Quantization trade-off: size vs mIoU per mode", quant_tradeoff),
         ("latency", "Latency per .pte (p50 / p90)", latency),
         ("loss_curves", "Phase 1 / Phase 2 / video loss curves", loss_curves),
         ("pipeline_timeline", "Pipeline timeline", pipeline_timeline),
         ("phrase_miou", "Teacher vs student mIoU per phrase", phrase_miou),
         ("reliability", "Presence reliability: teacher, student, shipped", reliability))


def write_plots(run: str, root: str | os.PathLike = REPORTS_ROOT, targets: dict[str, Target] | None = None,
                records: list[Record] | None = None) -> list[Plot]:
    """Draw every plot of ``run`` into ``<root>/<run>/plots/<name>.png`` (atomically); one :class:`Plot` each,
    in :data:`PLOTS` order. A plot without data is not drawn and its old PNG, if any, is removed."""
    store = ResultsStore(run, root=root)
    records = store.records() if records is None else records
    out_dir = store.dir / PLOTS_DIR
    plots = []
    for name, title, draw in PLOTS:
        path = out_dir / f"{name}.png"
        try:
            fig, note = draw(records, targets or {}, run, store.dir)
        except _Missing as why:
            path.unlink(missing_ok=True)
            plots.append(Plot(name, title, None, str(why)))
            continue
        except Exception as err:  # noqa: BLE001  (a plot must never cost the report; the line says what broke)
            path.unlink(missing_ok=True)
            plots.append(Plot(name, title, None, f"could not be drawn: {type(err).__name__}: {err}"[:300]))
            continue
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plots.append(Plot(name, title, path, note))
    return plots


def markdown_links(plots: list[Plot]) -> list[str]:
    """The report's plot section: each drawn plot as an image link (relative to report.md), else why not."""
    lines = ["## 부록) 그림", ""]
    for p in plots:
        if p.path is not None:
            lines += [f"### {p.title}", "", f"![{p.title}]({PLOTS_DIR}/{p.path.name})", "", f"출처: {p.note}", ""]
    missing = [f"- {p.title}: 그리지 않음 ({p.note})" for p in plots if p.path is None]
    if missing:
        lines += ["### 데이터가 없어 그리지 않은 그림", "", *missing, ""]
    return lines
