"""Tests and acceptance gates name the pipeline's stages through ``sam3m4.results.schema``, never as typed strings.

Static (nothing runs): every ``.py`` file under ``tests/`` and ``acceptance/`` is parsed, and a string literal that
*is* a stage name (``schema.STAGE3``, ``STAGE4``, ``STAGE5``) is reported with its file and line. Text that only
contains one (a message, a marker expression such as ``-m "stage5 and xnnpack"``, a cache file name built in an
f-string, source code written to a file by a test) is not a stage name and does not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

from sam3m4.results import schema

ROOT = Path(__file__).resolve().parents[1]
STAGE_NAMES = frozenset((schema.STAGE3, schema.STAGE4, schema.STAGE5))
SCANNED = ("tests", "acceptance")
# Files not yet moved to the schema, each with what its literals name. An entry must still hold literals: once
# its file is clean the check below fails until the entry is removed, so the list only shrinks.
PENDING: dict[str, str] = {}


def stage_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) of each string constant in ``source`` that equals a stage name (f-string parts excluded)."""
    tree = ast.parse(source)
    in_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STAGE_NAMES
                  and id(node) not in in_fstring)


def scan(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """Stage literals per file (repo-relative posix path) under ``tests/`` and ``acceptance/``."""
    found = {}
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            hits = stage_literals(path.read_text(encoding="utf-8"))
            if hits:
                found[path.relative_to(root).as_posix()] = hits
    return found


def test_no_stage_literal_outside_the_schema():
    found = scan()
    bad = [f"{path}:{line}: {value!r} (use schema.{value.upper()})"
           for path, hits in found.items() if path not in PENDING for line, value in hits]
    assert bad == []


def test_every_pending_file_still_needs_its_entry():
    found = scan()
    assert sorted(path for path in PENDING if path not in found) == []


def test_the_scan_finds_a_typed_stage_and_ignores_text_that_only_contains_one(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "acceptance").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        'from sam3m4.results import schema\n'
        f'store.latest(stage={schema.STAGE5!r}, metric=schema.PTE_MB)\n'
        f'ok = {{r.stage for r in records}} == {{{schema.STAGE3!r}}}\n'
        f'name = f"{schema.STAGE4}_{{mode}}"\n'
        f'marker = "-m {schema.STAGE5} and xnnpack"\n'
        f'code = "store.record(stage={schema.STAGE4!r})"\n'
        'fine = store.latest(stage=schema.STAGE5)\n')
    (tmp_path / "acceptance" / "test_y.py").write_text(f'CACHE = {{{schema.STAGE4!r}: 1}}\n')
    assert scan(tmp_path) == {"acceptance/test_y.py": [(1, schema.STAGE4)],
                              "tests/test_x.py": [(2, schema.STAGE5), (3, schema.STAGE3)]}
