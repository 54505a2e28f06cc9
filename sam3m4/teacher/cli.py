"""``sam3m4 teacher``: build the embedded default teacher (a tiny SAM 3 trained on the synthetic data).

    sam3m4 teacher bootstrap [--config configs/teacher_bootstrap.yaml] [key=value ...]

The result is a ``save_pretrained`` folder (``checkpoints/teacher/sam3-tiny-synth`` by default) that loads
through the same code path as the real SAM 3 (``sam3m4.teacher.load_teacher``).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    boot = sub.add_parser("bootstrap", help="train a tiny SAM 3-architecture teacher on the synthetic dataset",
                          description="Train a tiny SAM 3-architecture teacher on the synthetic dataset and "
                                      "save_pretrained it.")
    boot.add_argument("--config", default="configs/teacher_bootstrap.yaml", help="flat YAML config")
    boot.add_argument("overrides", nargs="*", help="key=value overrides, e.g. time_budget_s=60")
    boot.set_defaults(func=run_bootstrap)


def run_bootstrap(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sam3m4.teacher import bootstrap

    bootstrap.run(args)
    return 0
