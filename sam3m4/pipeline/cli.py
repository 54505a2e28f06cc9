"""``sam3m4 pipeline``: the whole job, stage by stage, resumable (what ``make demo`` runs).

    sam3m4 pipeline --config configs/demo.yaml            # embedded default, ~37 min on a quiet 2-core host
    sam3m4 pipeline --config configs/m4pro.yaml           # real SAM 3 + SA-Co / SA-V on a Mac M4 Pro
    sam3m4 pipeline --config configs/demo.yaml --list     # the stages and their commands, nothing runs
    sam3m4 pipeline --config configs/demo.yaml run=try2 --force

data -> teacher -> Phase 1/2 -> video -> quantize compare -> export -> visual QA -> acceptance (pytest, the
Stage 3 evaluation and every gate) -> manifest -> storage prune -> report. Each stage prints one line when
it starts and one when it ends, with its time; its own output goes to ``reports/<run>/pipeline/<stage>.log``
(``--verbose`` streams it instead). A second pipeline of the same run name is refused while this one runs
(:func:`sam3m4.runlock.run_name_lock`, naming its pid, host and start time). A re-run skips stages whose command, inputs and outputs are unchanged.
Failing gates do not stop the pipeline: they are the report's content (``reports/<run>/report.md``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sam3m4.flags import ranged
from sam3m4.paths import (ACCEPTANCE_HTML, PIPELINE_LOGS, PIPELINE_STATE, REPORT_FILE, VISUAL_INDEX, run_dir,
                          visual_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/demo.yaml", help="pipeline config (flat YAML)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. run=try2 video_steps=300")
    parser.add_argument("--force", action="store_true", help="run every stage, even unchanged ones")
    parser.add_argument("--list", action="store_true", help="print the stages and exit")
    parser.add_argument("--verbose", action="store_true", help="stream each stage's output instead of logging it")
    ranged(parser.add_argument("--jobs", type=int, default=0,
                        help="stages run at once when they do not depend on each other (0 = the CPU count; 1 = one "
                             "after the other, in order)"), 0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.pipeline.stages import build_stages, load_config
    from sam3m4.runlock import run_lock, run_name_lock

    cfg = load_config(args.config, args.overrides)
    stages = build_stages(cfg)
    if args.list:
        for i, s in enumerate(stages, start=1):
            print(f"{i:2d}. {s.name:<24} python {' '.join(s.argv[1:])}")
        return 0
    command = "sam3m4 pipeline --config " + " ".join([str(args.config), *args.overrides])
    # a second pipeline of this run name is refused, naming this one; the stages it runs side by side (Phase 1
    # beside the video teacher) pass through the run lock it holds for them, and no other training starts
    with run_name_lock(cfg["run"], command), run_lock(".", name=command):
        return _run(args, cfg, stages)


def _run(args: argparse.Namespace, cfg: dict, stages: list) -> int:
    from sam3m4.pipeline.artifacts import write_manifest
    from sam3m4.pipeline.runner import format_outcomes, run_stages
    from sam3m4.results import ResultsStore

    reports = Path(run_dir(cfg["run"]))
    first_prune = next((s.name for s in stages if s.name.startswith("prune")), "report")
    t0 = time.perf_counter()
    outcomes = run_stages(stages, reports / PIPELINE_STATE, force=args.force,
                          log_dir=None if args.verbose else reports / PIPELINE_LOGS,
                          after={first_prune: lambda: write_manifest(cfg, args.config)}, jobs=args.jobs or None)
    print("\n" + format_outcomes(outcomes, time.perf_counter() - t0))
    gates = {}
    for r in ResultsStore(cfg["run"]).records():
        if r.passed is not None:
            gates[(r.stage, r.subject, r.metric)] = r.passed
    failed = sorted(f"{s}:{subj}:{m}" for (s, subj, m), ok in gates.items() if not ok and not subj.startswith("planted/"))
    planted = sorted(f"{s}:{subj}:{m}" for (s, subj, m), ok in gates.items() if subj.startswith("planted/"))
    print(f"\ngates: {len(gates) - len(failed) - len(planted)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "")
          + (f"; planted bad models, which must fail: {', '.join(planted)}" if planted else ""))
    for path in (reports / REPORT_FILE, reports / ACCEPTANCE_HTML, Path(visual_dir(cfg["run"])) / VISUAL_INDEX):
        print(f"  {path}{'' if path.exists() else '  (missing)'}")
    return 0
