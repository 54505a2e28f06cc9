"""Targets file: the shipped file parses; bad entries name the file and the key; one rule finds it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sam3m4.errors import ConfigError
from sam3m4.results import TargetsNotFound, load_targets, load_targets_file, locate_targets

SHIPPED = Path(__file__).resolve().parents[2] / "acceptance" / "targets.yaml"


def test_shipped_targets_have_the_release_gates():
    t = load_targets(SHIPPED)
    assert t["quant_miou_drop"].check(2.0) and not t["quant_miou_drop"].check(2.01)
    assert t["pte_size_mb"].check(49.9) and not t["pte_size_mb"].check(50)
    assert t["image_latency_ms"].check(99) and not t["image_latency_ms"].check(100)
    assert t["video_fps"].check(15.1) and not t["video_fps"].check(15)
    assert t["npu_utilisation"].check(90.5) and not t["npu_utilisation"].check(90)
    assert t["student_miou_ratio"].check(0.9) and not t["student_miou_ratio"].check(0.89)
    # the regression gate (sam3m4 report --compare): some gates carry a tolerance, in their unit
    assert t["quant_miou_drop"].regression_tolerance == 0.5 and t["embedded_teacher_miou"].regression_tolerance is None


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


@pytest.mark.parametrize("body, fragment", [
    ("targets:\n  a: {metric: m, comparison: '<', value: 1}\n  a: {metric: m, comparison: '>', value: 2}\n",
     "line 3 column 3: duplicate key 'a'"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1}\ntarget:\n  b: {}\n", "target: unknown top-level key"),
    ("targets:\n  a: {metric: m, comparison: '<', value: .nan}\n", "targets.a.value: expected a finite number"),
    ("targets:\n  a: {metric: 7, comparison: '<', value: 1}\n", "targets.a.metric: expected a string, got 7"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, unit: [ms]}\n", "targets.a.unit: expected a string"),
    ("targets:\n  a: {metric: m, comparison: '<'}\n", "targets.a.value: missing key"),
    ("targets:\n  a: [1, 2]\n", "targets.a: expected a mapping, got list"),
    ("targets: {}\n", "targets: expected a non-empty mapping"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, regression_tolerance: -1}\n",
     "targets.a.regression_tolerance: expected a finite number >= 0, got -1"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, regression_tolerance: lots}\n",
     "targets.a.regression_tolerance: expected a finite number >= 0, got 'lots'"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, regression_tolerance: .inf}\n",
     "targets.a.regression_tolerance: expected a finite number >= 0"),
    ("targets:\n  a: {metric: m, comparison: '<', value: 1, regresion_tolerance: 1}\n",
     "targets.a.regresion_tolerance: unknown key"),
])
def test_more_bad_targets_name_file_and_key(tmp_path, body, fragment):
    path = tmp_path / "targets.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    assert str(err.value).startswith(f"{path}: ") and fragment in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_not_utf8_and_missing_given_file(tmp_path, monkeypatch):
    path = tmp_path / "targets.yaml"
    path.write_bytes(b"targets:\n  a: \xff\n")
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    assert str(err.value) == f"{path}: cannot read targets: not UTF-8 text (byte 14)"
    monkeypatch.setenv("SAM3M4_TARGETS", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError) as err:
        load_targets()
    assert str(err.value).startswith(f"{tmp_path / 'gone.yaml'}: cannot read targets (from $SAM3M4_TARGETS): ")
    assert not isinstance(err.value, TargetsNotFound)  # a file that was named must exist


def _planted(folder: Path, value: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "targets.yaml"
    path.write_text(f"targets:\n  pte_size_mb: {{metric: pte_mb, comparison: '<', value: {value}}}\n")
    return path


def test_one_rule_given_then_env_then_default(tmp_path, monkeypatch):
    """--targets > $SAM3M4_TARGETS > acceptance/targets.yaml in or above the cwd, with the file's sha256."""
    default = _planted(tmp_path / "proj" / "acceptance", 50)
    env = _planted(tmp_path / "env", 1)
    given = _planted(tmp_path / "given", 7)
    (tmp_path / "proj" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "sub")
    monkeypatch.delenv("SAM3M4_TARGETS", raising=False)
    tf = load_targets_file()
    assert (tf.path, tf.origin, tf.targets["pte_size_mb"].value) == (default.resolve(), "default", 50.0)
    assert tf.sha256 == hashlib.sha256(default.read_bytes()).hexdigest()
    monkeypatch.setenv("SAM3M4_TARGETS", str(env))
    tf = load_targets_file()
    assert (tf.path, tf.origin, tf.targets["pte_size_mb"].value) == (env, "$SAM3M4_TARGETS", 1.0)
    assert f"sha256 {hashlib.sha256(env.read_bytes()).hexdigest()}, $SAM3M4_TARGETS" in tf.describe()
    tf = load_targets_file(given)
    assert (tf.path, tf.origin, tf.targets["pte_size_mb"].value) == (given, "given", 7.0)
    assert locate_targets(None) == (env, "$SAM3M4_TARGETS") and load_targets()["pte_size_mb"].value == 1.0
    monkeypatch.setenv("SAM3M4_TARGETS", " ")
    with pytest.raises(ConfigError, match=r"^\$SAM3M4_TARGETS is set but empty"):
        load_targets_file()


def test_no_default_file_is_targets_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAM3M4_TARGETS", raising=False)
    with pytest.raises(TargetsNotFound) as err:
        load_targets_file()
    assert "acceptance/targets.yaml: targets file not found in" in str(err.value)
    assert "SAM3M4_TARGETS" in str(err.value)
