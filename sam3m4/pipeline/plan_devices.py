"""The cost plan for N devices: which stages split over ``torchrun`` ranks, and their hours on 1, 4, 8, ... devices.

    sam3m4 plan --run rehearsal --for configs/m4pro.yaml --devices 4,8   # plan.md gets the N-device table
    sam3m4 plan --from-plan reports/rehearsal/plan.md --devices 4,8      # the table from a plan's own hours

Each stage row of :func:`sam3m4.pipeline.plan.plan_rows` (hours on one device, from the measured per-item
costs) is divided by N where the stage splits its work over N ranks, and kept where it does not. How a stage
splits (:data:`SCALING`):

* ``cache``: the teacher caches (``sam3m4 distill cache``, ``sam3m4 distill video --cache-only``); the ranks
  share the missing items and exchange only lists of names, so any device kind works (CUDA, CPU, MPS: one
  rank per Mac).
* ``ddp``: Phase 1 / Phase 2 (``torchrun -m sam3m4.distill.recipe``), DistributedDataParallel: the gradients'
  all-reduce needs CUDA (nccl) or CPU (gloo) tensors; gloo has no MPS support, so on Macs they run on one.
* anything else runs in one process (video distillation, quantize, export, visual QA, acceptance).

The division is ideal (linear): no multi-device run was measured here, so the all-reduce, the shared file
system and stragglers are not in the figures.
"""

from __future__ import annotations

import re
from pathlib import Path

from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_text

SCALING = {"teacher-feature cache (images)": "cache", "video teacher masklets (cache)": "cache",
           "Phase 1": "ddp", "Phase 2": "ddp"}
HOW = {"cache": "yes: torchrun ranks share the missing items (any device)",
       "ddp": "yes on CUDA / CPU (DDP); no on MPS (gloo has no MPS tensors)"}
SECTION = "## Hours with N devices"
TABLE = "## Hours per stage for "


def parse_devices(text: str | int) -> list[int]:
    """``"4,8"`` -> ``[1, 4, 8]``: the device counts of the table, 1 always first."""
    try:
        counts = sorted({1, *(int(x) for x in str(text).split(",") if x.strip())})
    except ValueError:
        raise DataFormatError(f"--devices: {text!r} is not a comma-separated list of device counts") from None
    if counts[0] < 1:
        raise DataFormatError(f"--devices: {text!r}: a device count is at least 1")
    return counts


def scaled(name: str, seconds: float | None, n: int, mps: bool = False) -> float | None:
    """A stage's ``seconds`` on one device -> on ``n`` devices (the same kind; ``mps``: Macs)."""
    how = SCALING.get(name)
    if seconds is None or how is None or how == "ddp" and mps:
        return seconds
    return seconds / n


def _h(seconds: float | None) -> str:
    return "not measured" if seconds is None else f"{seconds / 3600:,.1f} h"


def devices_lines(rows: list[tuple], devices: list[int], source: str) -> list[str]:
    """The Markdown section: hours per stage and in total on each device count, both columns of ``rows``
    (``(stage, work, this host s, M4 Pro s)``), the stages that do not scale, and ``source`` (how the one-device
    hours were obtained)."""
    head = " | ".join(f"this host x{n}" for n in devices) + " | " + " | ".join(f"M4 Pro x{n}" for n in devices)
    lines = [SECTION, "",
             f"Hours per stage with N devices of one kind working together under `torchrun` (one rank per device; "
             f"several machines need the caches on a file system they all mount, see docs/real-run.md). "
             f"{source} A stage that splits is divided by N (ideal: no multi-device run was measured, so "
             "gradient all-reduce, the shared file system and stragglers are not included); the others keep "
             "their one-device hours.", "",
             f"| stage | splits over N | {head} |", "|---|---|" + "---:|" * (2 * len(devices))]
    totals = [0.0] * (2 * len(devices))
    for name, _, here, mac in rows:
        cells = [scaled(name, here, n) for n in devices] + [scaled(name, mac, n, mps=True) for n in devices]
        totals = [t + (c or 0) for t, c in zip(totals, cells)]
        text = [_h(c) if c is not None or i < len(devices) else "not estimated" for i, c in enumerate(cells)]
        lines.append(f"| {name} | {HOW.get(SCALING.get(name), 'no: one process')} | {' | '.join(text)} |")
    lines.append(f"| **total** | | {' | '.join(f'**{_h(t)}**' for t in totals)} |")
    fixed = [r[0] for r in rows if r[0] not in SCALING]
    lines += ["", f"Do not scale with N (one process each): {', '.join(fixed)}; on Macs also Phase 1 and Phase 2 "
              "(DistributedDataParallel needs CUDA or CPU tensors). With many devices these set the floor of "
              "the total."]
    return lines


_ROW = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<work>[^|]*?) \| (?P<here>[^|]+?) \| (?P<mac>[^|]+?) \|$")


def _seconds(cell: str) -> float | None:
    cell = cell.strip("* ")
    return float(cell[:-2].replace(",", "")) * 3600 if cell.endswith(" h") else None


def rows_from_plan(text: str, path: str | Path = "plan.md") -> list[tuple]:
    """The stage rows of a written plan.md's hours table (its subtotal and total lines left out), hours back to
    seconds: what :func:`devices_lines` needs, as recorded (0.1 h precision)."""
    if TABLE not in text:
        raise DataFormatError(f"{path}: '{TABLE.strip()}': no hours table (not a plan written by `sam3m4 plan`)")
    rows = []
    for line in text.split(TABLE, 1)[1].splitlines()[1:]:
        if line.startswith("## "):
            break
        m = _ROW.match(line)
        if m and not m["name"].startswith(("stage", "---", "subtotal", "**")):
            rows.append((m["name"], m["work"], _seconds(m["here"]), _seconds(m["mac"])))
    if not rows:
        raise DataFormatError(f"{path}: '{TABLE.strip()}': the table has no stage rows")
    return rows


def with_devices_section(text: str, lines: list[str]) -> str:
    """``text`` (a plan.md) with its N-device section replaced by ``lines``, or inserted before the disk table."""
    body = text.split("\n")
    if SECTION in body:
        start = body.index(SECTION)
        end = next((i for i in range(start + 1, len(body)) if body[i].startswith("## ")), len(body))
        body[start:end] = lines + [""]
    else:
        at = next((i for i, line in enumerate(body) if line.startswith("## Disk per folder")), len(body))
        body[at:at] = lines + [""]
    return "\n".join(body)


def update_plan(path: str | Path, devices: list[int]) -> Path:
    """Add (or refresh) the N-device section of an existing plan.md from its own one-device hours; atomic."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    source = ("The one-device hours are this plan's own table above, as recorded (0.1 h a row, so a total here "
              "can differ from that table's by 0.1 h); the rehearsal was not re-run.")
    atomic_write_text(path, with_devices_section(text, devices_lines(rows_from_plan(text, path), devices, source)))
    return path
