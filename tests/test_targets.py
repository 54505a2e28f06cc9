"""Targets file: the shipped file parses; bad entries name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam3m4.errors import ConfigError
from sam3m4.results import load_targets

SHIPPED = Path(__file__).resolve().parents[1] / "acceptance" / "targets.yaml"


def test_shipped_targets_have_the_release_gates():
    t = load_targets(SHIPPED)
    assert t["quant_miou_drop"].check(2.0) and not t["quant_miou_drop"].check(2.01)
    assert t["pte_size_mb"].check(49.9) and not t["pte_size_mb"].check(50)
    assert t["image_latency_ms"].check(99) and not t["image_latency_ms"].check(100)
    assert t["video_fps"].check(15.1) and not t["video_fps"].check(15)
    assert t["npu_utilisation"].check(90.5) and not t["npu_utilisation"].check(90)
    assert t["student_miou_ratio"].check(0.9) and not t["student_miou_ratio"].check(0.89)


@pytest.mark.parametrize("body, fragment", [
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, colour: red}\n", "targets.a.colour: unknown key"),
    ("targets:\n  a: {metric: m, value: 1}\n", "targets.a.comparison: missing key"),
    ("targets:\n  a: {metric: m, comparison: '~', value: 1}\n", "targets.a.comparison"),
    ("targets:\n  a: {metric: m, comparison: '<', value: fast}\n", "targets.a.value: expected a number"),
    ("nothing: here\n", "missing mapping 'targets:'"),
    ("targets: [\n", "cannot read targets"),
])
def test_bad_targets_name_file_and_key(tmp_path, body, fragment):
    path = tmp_path / "targets.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    assert str(path) in str(err.value) and fragment in str(err.value)
    assert "\n" not in str(err.value)
