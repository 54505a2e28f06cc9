"""``sam3m4 plan --devices``: hours on N devices from the one-device plan; which stages split and which do not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sam3m4.errors import DataFormatError
from sam3m4.pipeline import plan_devices

ROOT = Path(__file__).resolve().parents[2]
H = 3600.0
ROWS = [("teacher-feature cache (images)", "w", 800 * H, 40 * H), ("Phase 1", "w", 16 * H, 2 * H),
        ("Phase 2", "w", 320 * H, 40 * H), ("video teacher masklets (cache)", "w", 2400 * H, 80 * H),
        ("video distillation", "w", 8 * H, 1 * H), ("quantize", "w", 0.5 * H, None)]


def _cells(lines: list[str], stage: str) -> list[str]:
    row = next(x for x in lines if x.startswith(f"| {stage} |"))
    return [c.strip() for c in row.strip("|").split("|")][2:]


def test_stages_that_split_are_divided_by_n_and_the_others_are_not():
    lines = plan_devices.devices_lines(ROWS, [1, 4, 8], "From the test.")
    assert _cells(lines, "teacher-feature cache (images)") == ["800.0 h", "200.0 h", "100.0 h", "40.0 h", "10.0 h", "5.0 h"]
    assert _cells(lines, "video teacher masklets (cache)")[:3] == ["2,400.0 h", "600.0 h", "300.0 h"]
    # DDP: divided on CUDA / CPU hosts, not on Macs (gloo has no MPS tensors)
    assert _cells(lines, "Phase 2") == ["320.0 h", "80.0 h", "40.0 h", "40.0 h", "40.0 h", "40.0 h"]
    assert _cells(lines, "video distillation") == ["8.0 h", "8.0 h", "8.0 h", "1.0 h", "1.0 h", "1.0 h"]
    assert _cells(lines, "quantize")[3:] == ["not estimated"] * 3
    total = _cells(lines, "**total**")
    assert total[0] == f"**{(800 + 16 + 320 + 2400 + 8 + 0.5):,.1f} h**"
    assert total[2] == f"**{(100 + 2 + 40 + 300 + 8 + 0.5):,.1f} h**" and total[5] == f"**{(5 + 2 + 40 + 10 + 1):,.1f} h**"
    assert any(x.startswith("Do not scale with N (one process each): video distillation, quantize;") for x in lines)


def test_a_written_plan_gets_its_n_device_section_from_its_own_hours(tmp_path):
    plan = tmp_path / "plan.md"
    shutil.copy(ROOT / "reports" / "rehearsal" / "plan.md", plan)
    rows = plan_devices.rows_from_plan(plan.read_text())
    assert [r[0] for r in rows][:2] == ["teacher-feature cache (images)", "Phase 1"] and len(rows) == 9
    plan_devices.update_plan(plan, plan_devices.parse_devices("8,4"))
    once = plan.read_text()
    plan_devices.update_plan(plan, [1, 4, 8])
    assert plan.read_text() == once and once.count(plan_devices.SECTION) == 1  # replaced, not appended
    assert once.index(plan_devices.SECTION) < once.index("## Disk per folder")
    lines = once.split(plan_devices.SECTION)[1].split("\n")
    cache = dict(zip(["x1", "x4", "x8"], _cells(lines, "teacher-feature cache (images)")))
    one = rows[0][2] / H
    assert cache == {"x1": f"{one:,.1f} h", "x4": f"{one / 4:,.1f} h", "x8": f"{one / 8:,.1f} h"}


def test_bad_devices_and_plans_are_one_line_errors(tmp_path):
    with pytest.raises(DataFormatError, match="--devices: 'four'"):
        plan_devices.parse_devices("four")
    with pytest.raises(DataFormatError, match="a device count is at least 1"):
        plan_devices.parse_devices("0,4")
    (tmp_path / "p.md").write_text("# not a plan\n")
    with pytest.raises(DataFormatError, match="p.md: '## Hours per stage for': no hours table"):
        plan_devices.update_plan(tmp_path / "p.md", [1, 4])
