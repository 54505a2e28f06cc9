"""The layer rule (style.md habit 13), checked by parsing every module's imports (no import is executed).

Layers, lowest first; a module imports only its own layer or lower ones, at the top of the file:

    0  errors, metrics, losses, fileio, paths, progress, runlock, config   (sam3m4/__init__ too)
    1  data, results, checkpoint, env
    2  models (incl. the CLIP tokenizer)
    3  teacher
    4  distill, eval, predict
    5  quantize
    6  export, device, visual, storage
    7  report
    8  pipeline
    9  the CLI files: cli.py, */cli.py, *_cli.py, __main__.py (they may import anything, inside functions too,
       so ``sam3m4 --help`` stays fast)
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sam3m4"
LAYERS = [("errors", "metrics", "losses", "fileio", "paths", "progress", "runlock", "config", "safeyaml", "schemas",
           "flags"),
          ("data", "results", "checkpoint", "env"),
          ("models",),
          ("teacher",),
          ("distill", "eval", "predict"),
          ("quantize",),
          ("export", "device", "visual", "storage"),
          ("report",),
          ("pipeline",)]
CLI_LAYER = len(LAYERS)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}

# Function-level sam3m4 imports allowed in library modules, per file: none (the CLI files may import inside functions).
HIDDEN_ALLOWED: dict[str, int] = {}


def _is_cli(path: Path) -> bool:
    return path.name in ("cli.py", "__main__.py") or path.name.endswith("_cli.py")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    unit, last = _unit(module), module.rsplit(".", 1)[-1]
    if last in ("cli", "__main__") or last.endswith("_cli"):
        return CLI_LAYER
    if unit == "__init__":
        return 0
    assert unit in LAYER, f"{module}: no layer for '{unit}' (add it to LAYERS here and to the README diagram)"
    return LAYER[unit]


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield rel, ".".join(parts), ast.parse(path.read_text(encoding="utf-8"))


def _sam3m4_imports(tree: ast.AST):
    """(node, imported module) for every ``import sam3m4...`` / ``from sam3m4... import`` in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: relative import (use the absolute sam3m4 path)"
            if (node.module or "").startswith("sam3m4"):
                names = [f"{node.module}.{a.name}" if node.module == "sam3m4" else node.module for a in node.names]
                for name in names:
                    yield node, name if _unit(name) in LAYER or name == "sam3m4" else node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sam3m4"):
                    yield node, alias.name


def _function_imports(tree: ast.AST):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def upward_imports() -> list[str]:
    found = []
    for rel, module, tree in _modules():
        own = CLI_LAYER if _is_cli(rel) else _layer(module)
        for node, target in _sam3m4_imports(tree):
            if _layer(target) > own:
                found.append(f"{rel}:{node.lineno}: {module} (layer {own}) imports {target} (layer {_layer(target)})")
    return found


def hidden_imports() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for rel, _, tree in _modules():
        if _is_cli(rel):
            continue
        for node in _function_imports(tree):
            if any(True for _ in _sam3m4_imports(node)):
                counts[str(rel)] += 1
    return dict(counts)


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_library_modules_import_sam3m4_at_the_top():
    over = {f: n for f, n in hidden_imports().items() if n > HIDDEN_ALLOWED.get(f, 0)}
    assert over == {}, "function-level sam3m4 imports outside the CLI files (move them to the top of the file)"


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for rel, module, tree in _modules():
        if _is_cli(rel):
            continue
        for _, target in _sam3m4_imports(tree):
            if _unit(target) != _unit(module) and _unit(target) != "__init__":
                graph[_unit(module)].add(_unit(target))
    seen, stack = set(), []

    def visit(unit):
        if unit in stack:
            pytest.fail("import cycle: " + " -> ".join(stack[stack.index(unit):] + [unit]))
        if unit in seen:
            return
        stack.append(unit)
        for nxt in sorted(graph[unit]):
            visit(nxt)
        stack.pop()
        seen.add(unit)

    for unit in sorted(graph):
        visit(unit)


def test_no_one_letter_module_aliases():
    """``import x as C``: one letter stood for four different modules; ``F`` (torch.nn.functional) and ``np`` are
    the libraries' own conventions and stay."""
    bad = []
    for rel, _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.asname and len(alias.asname) == 1 and alias.asname != "F":
                        bad.append(f"{rel}:{node.lineno}: as {alias.asname}")
    assert bad == []


def test_atomic_writes_go_through_one_helper():
    """``os.replace`` (a temporary file moved into place) is written once, in :mod:`sam3m4.fileio`."""
    bad = []
    for rel, _, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("replace", "rename")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"):
                bad.append(f"{rel}:{node.lineno}")
    assert [b for b in bad if not b.startswith("sam3m4/fileio.py:")] == []


def test_the_checker_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The rule can fail: a data module importing the report is found."""
    fake = tmp_path / "sam3m4"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "x.py").write_text("from sam3m4.report.markdown import render_report\n")
    (fake / "data" / "y.py").write_text("def f():\n    from sam3m4.errors import ConfigError\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert [line.split(": ", 1)[1] for line in upward_imports()] == [
        "sam3m4.data.x (layer 1) imports sam3m4.report.markdown (layer 7)"]
    assert hidden_imports() == {"sam3m4/data/y.py": 1}


def test_tests_mirror_the_package():
    """``tests/<name>/`` holds the tests of ``sam3m4/<name>`` (a package or module); tests of the whole project or
    of top-level modules sit in ``tests/`` itself."""
    tests = ROOT.parent / "tests"  # ROOT: the sam3m4 package
    folders = sorted(p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert folders, "tests/ has no package folders"
    for name in folders:
        assert (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file(), (
            f"tests/{name}/: no sam3m4/{name} package or module to mirror")
        assert list((tests / name).glob("test_*.py")), f"tests/{name}/: no test file"
