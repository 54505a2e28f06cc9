"""Results store and release targets: where every reported number is written and judged."""

from sam3m4.results.runs import check_run_name
from sam3m4.results.store import Record, ResultsStore, compare, sha256_file
from sam3m4.results.targets import (Target, TargetsFile, TargetsNotFound, find_targets_file, load_targets,
                                    load_targets_file, locate_targets)

__all__ = ["Record", "ResultsStore", "Target", "TargetsFile", "TargetsNotFound", "check_run_name", "compare",
           "find_targets_file", "load_targets", "load_targets_file", "locate_targets", "sha256_file"]
