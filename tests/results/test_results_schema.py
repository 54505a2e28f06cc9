"""One results schema: the report reads only metrics some writer records, and names them through the schema.

Static (nothing runs): the readers are ``sam3m4/report/``; the writers are every other module of ``sam3m4`` and the
gates in ``acceptance/`` (they record the ratios they judge). A metric counts as written when a writer names it
(a schema constant, or a literal ``metric="..."``), or when the schema lists how its name is built.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sam3m4.results import schema

ROOT = Path(__file__).resolve().parents[2]
METRIC_CONSTANTS = {name: value for name, value in vars(schema).items()
                    if name.isupper() and isinstance(value, str) and value in schema.METRICS}


def _files(*folders: str, skip: str | None = None):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if skip is None or skip not in path.relative_to(ROOT).as_posix():
                yield path


def _schema_metrics(tree: ast.AST) -> set[str]:
    """Metrics named as ``schema.NAME`` or imported from the schema by name."""
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "schema"
                and node.attr in METRIC_CONSTANTS):
            found.add(METRIC_CONSTANTS[node.attr])
        if isinstance(node, ast.ImportFrom) and node.module == "sam3m4.results.schema":
            found |= {METRIC_CONSTANTS[a.name] for a in node.names if a.name in METRIC_CONSTANTS}
    return found


def _literal_metrics(tree: ast.AST) -> set[str]:
    """``metric="..."`` literals (a writer that has not moved to the schema yet)."""
    return {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
            if kw.arg == "metric" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)}


def read_metrics(folder: str = "sam3m4/report") -> set[str]:
    return set().union(*(_schema_metrics(ast.parse(p.read_text(encoding="utf-8"))) for p in _files(folder)))


def written_metrics() -> set[str]:
    found = set(schema.BUILT_NAMES)
    for path in _files("sam3m4", "acceptance", skip="sam3m4/report/"):
        if path.name == "schema.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found |= _schema_metrics(tree) | _literal_metrics(tree)
    return found


def test_the_report_reads_no_metric_that_nothing_writes():
    read = read_metrics()
    assert read, "the report names no metric through the schema"
    assert sorted(read - written_metrics()) == []


def test_every_schema_metric_is_written_somewhere():
    assert sorted(set(schema.METRICS) - written_metrics()) == []


def test_the_report_and_the_gates_type_no_stage_or_metric_string():
    """Lookups name stages, subjects and metrics through the schema: no ``"stage5"`` or ``metric="miou"`` literal."""
    names = set(schema.STAGES) | set(schema.METRICS)
    bad = []
    for path in [*_files("sam3m4/report"), ROOT / "acceptance/conftest.py", ROOT / "acceptance/test_stage3.py",
                 ROOT / "acceptance/test_stage3_video.py", ROOT / "acceptance/test_foundation.py",
                 ROOT / "acceptance/test_stage4.py", ROOT / "acceptance/test_stage5.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg in ("stage", "metric") and isinstance(kw.value, ast.Constant) and kw.value.value in names:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {kw.arg}={kw.value.value!r}")
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr in ("stage", "metric"):
                for c in node.comparators:
                    if isinstance(c, ast.Constant) and c.value in names:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.left.attr} == {c.value!r}")
    assert bad == []


def test_a_renamed_writer_is_caught(tmp_path, monkeypatch):
    """The check can fail: a report reading a metric that no writer names is found."""
    (tmp_path / "sam3m4" / "report").mkdir(parents=True)
    (tmp_path / "sam3m4" / "report" / "x.py").write_text(
        "from sam3m4.results import schema\ncell(schema.STAGE5, 'a/b', schema.TRACK_FPS)\n")
    (tmp_path / "sam3m4" / "quantize").mkdir()
    (tmp_path / "sam3m4" / "quantize" / "w.py").write_text("store.record(stage='stage4', metric='track_fps_v2')\n")
    (tmp_path / "acceptance").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert read_metrics() == {"track_fps"}
    assert read_metrics() - written_metrics() == {"track_fps"}


def test_gate_outcomes_are_values():
    assert schema.GateOutcome(schema.FAIL).blocks_release and not schema.GateOutcome(schema.PASS).blocks_release
    assert not schema.GateOutcome(schema.NOT_MEASURED, "no QNN SDK").blocks_release  # it warns (docs/gates.md)
    assert not schema.GateOutcome(schema.UNSUPPORTED, "Core ML has no dynamic activations").blocks_release
    assert schema.gate_outcome_of_record(schema.NOT_MEASURABLE) == schema.NOT_MEASURED
    assert schema.gate_outcome_of_record(schema.UNSUPPORTED_OUTCOME) == schema.UNSUPPORTED
    with pytest.raises(ValueError, match="needs its reason"):
        schema.GateOutcome(schema.NOT_MEASURED)
    with pytest.raises(ValueError, match="expected one of"):
        schema.GateOutcome("skipped")
    assert all(m.unit in (schema.FRACTION, schema.PERCENT, schema.MB, schema.BYTES, schema.MS, schema.FPS,
                          schema.RATIO, schema.TEXT, schema.POINTS, schema.SECONDS, schema.DB) for m in schema.METRICS.values())
