"""The ``sam3m4`` command line: one subcommand per pipeline stage.

    sam3m4 --help                 # lists the subcommands
    sam3m4 data synth --help      # each has its own help

Subcommands live next to the code they drive (``sam3m4/<area>/cli.py``) and are imported only when
the command line needs them, so ``sam3m4 --help`` stays fast. An error on the user's input prints one
line, ``sam3m4: error: <what is wrong>``, and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from sam3m4 import __version__
from sam3m4.errors import Sam3m4Error
from sam3m4.flags import check_ranges
from sam3m4.flags import install as install_ranges

# name -> (module with add_arguments(parser) and run(args), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("sam3m4.data.cli", "generate the synthetic SA-Co dataset and check datasets"),
    "models": ("sam3m4.models.cli", "student presets and the teacher: parameters, fp16 MB, GFLOPs"),
    "teacher": ("sam3m4.teacher.cli", "build the embedded default teacher (tiny SAM 3 on synthetic data)"),
    "distill": ("sam3m4.distill.cli", "teacher-feature cache, Phase 1 and Phase 2 distillation (torchrun for DDP)"),
    "eval": ("sam3m4.eval.cli", "score a model on a dataset's val split (mIoU, Presence F1, J&F)"),
    "saco-eval": ("sam3m4.eval.saco_cli", "SA-Co official metrics (cgF1, IL_MCC, pmF1, pHOTA) by Meta's evaluators"),
    "quantize": ("sam3m4.quantize.cli", "quantize a student (fp16, int4, int8_int4, QAT): size, mIoU, ms, decision"),
    "export": ("sam3m4.export.cli", "ExecuTorch .pte per backend x quant mode (Core ML, QNN, XNNPACK): size, NPU share"),
    "bench": ("sam3m4.export.bench", "production presets for Core ML + XNNPACK: .pte MB, NPU share, GFLOPs, latency"),
    "device": ("sam3m4.device.cli", "import on-device benchmark results (ExecuTorch benchmark apps) into stage5"),
    "predict": ("sam3m4.predict", "segment a noun phrase in image files with a trained student"),
    "visual-eval": ("sam3m4.visual.cli", "teacher vs student overlays per image x prompt + Visual QA checklist page "
                    "(report section 3)"),
    "prune": ("sam3m4.storage.cli", "free disk: keep best + last K checkpoints, thin vis pictures, caches with "
              "--include-cache (dry run unless --apply)"),
    "pipeline": ("sam3m4.pipeline.cli", "the whole job, resumable: data -> teacher -> distill -> quantize -> export "
                 "-> visual QA -> gates -> prune -> report"),
    "report": ("sam3m4.report.cli", "render reports/<run>/report.md from the results store"),
    "plan": ("sam3m4.pipeline.plan_cli", "the real run's hours and disk per stage from a rehearsal (make rehearse)"),
}

# commands that write checkpoints, caches or training logs: they hold the run lock (sam3m4.runlock)
TRAINING_COMMANDS = ("teacher", "distill", "quantize")
# a command that writes a run's files waits this long for another writer of the same run (a report, an eval) to
# finish before it is refused; `sam3m4 pipeline` is refused at once
RUN_LOCK_WAIT_S = 120.0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Given ``argv``, only the subcommand it names is imported (the others get their
    one-line help from :data:`COMMANDS`), so ``sam3m4 --help`` imports no torch; without it, every one is."""
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="sam3m4", description="Distill, quantize, export and release-gate SAM 3 "
                                     "for phones.")
    parser.add_argument("--version", action="version", version=f"sam3m4 {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        if argv is not None and name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().split("\n")[0])
        module.add_arguments(cmd)
        install_ranges(cmd)  # each numeric flag's declared range, checked by main before the command runs
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser(argv).parse_args(argv)
    try:
        from sam3m4.config import resolve_args

        args = resolve_args(args)  # --config FILE and key=value of the flag-based commands (flags win)
        check_ranges(args)  # every numeric flag in its range before any data is read or file written
        with contextlib.ExitStack() as held:
            if getattr(args, "run", None) is not None:  # every command's --run names a folder under reports/
                from sam3m4.results.runs import check_run_name
                from sam3m4.runlock import run_name_lock

                check_run_name(args.run, "--run")
                if not getattr(args, "dry_run", False):  # a second writer of this run is refused, naming the first
                    reports = _reports_dir(args)  # a --root's reports folder is not created here
                    held.enter_context(run_name_lock(args.run, "sam3m4 " + " ".join(argv), reports, reports is None,
                                                     wait_s=RUN_LOCK_WAIT_S))
            if args.command in TRAINING_COMMANDS:  # `sam3m4 prune --apply` refuses while this is held
                from sam3m4.runlock import run_lock

                held.enter_context(run_lock(".", name="sam3m4 " + " ".join(argv)))
            result = args.func(args)
    except KeyboardInterrupt:
        print("sam3m4: interrupted", file=sys.stderr)
        return 130
    except (Sam3m4Error, OSError) as err:
        if debug:
            raise
        print(f"sam3m4: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, the traceback is behind --debug
        if debug:
            raise
        print(f"sam3m4: internal error: {type(err).__name__}: {_one_line(err)} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


def _reports_dir(args: argparse.Namespace):
    """The reports folder a command with ``--run`` writes to: ``<--root>/reports`` for prune (its --root is the
    project), ``--root`` for the commands whose --root is the reports folder, else None (the project's)."""
    from pathlib import Path

    from sam3m4.paths import REPORTS_ROOT

    root = getattr(args, "root", None)
    if root is None:
        return None
    return Path(root) / REPORTS_ROOT if args.command == "prune" else Path(root)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
