"""Run names: one rule (``sam3m4.results.runs``) and every command that takes one refuses a bad name with one
line naming the option, exit 2, before it writes anything."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sam3m4 import cli
from sam3m4.distill import recipe
from sam3m4.errors import ConfigError
from sam3m4.pipeline.stages import load_config
from sam3m4.results import ResultsStore, check_run_name

ROOT = Path(__file__).resolve().parents[2]
BAD = ["../x", ".hidden", "a/b", "", "a..b", "-x", "x\n", "a\\b", "x" * 65]

# every sam3m4 command with a --run option -> its argv, the bad name to be appended after --run
COMMANDS = {
    "eval": ["eval", "--model", "gt"],
    "quantize": ["quantize", "--mode", "fp16"],
    "export": ["export", "--backend", "xnnpack", "--mode", "fp16"],
    "bench": ["bench"],
    "device import": ["device", "import", "results.json"],
    "distill video": ["distill", "video"],
    "visual-eval": ["visual-eval"],
    "prune": ["prune"],
    "report": ["report"],
    "plan": ["plan"],
}


def _commands_with_run(parser: argparse.ArgumentParser, path=()) -> set[str]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands_with_run(sub, (*path, name))
        elif "--run" in action.option_strings:
            found.add(" ".join(path))
    return found


def test_the_rule():
    for good in ("demo", "test", "try2", "a.b_c-d", "A" * 64, "0"):
        assert check_run_name(good) == good
    for bad in [*BAD, None, 3]:
        with pytest.raises(ConfigError, match=r"^--run: .* is not a valid run name \(1-64 characters"):
            check_run_name(bad)
    with pytest.raises(ConfigError, match="^run: '../escape'"):
        ResultsStore("../escape")


def test_every_command_with_a_run_option_is_tested():
    assert _commands_with_run(cli.build_parser()) == set(COMMANDS)


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", ""])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_bad_run_name(command, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*COMMANDS[command], "--run", bad]) == 2
    err = capsys.readouterr().err
    assert err == f"sam3m4: error: --run: {bad!r} is not a valid run name (1-64 characters from A-Z a-z 0-9 . _ -, " \
                  "starting with a letter or digit, no '..')\n"
    assert list(tmp_path.iterdir()) == []  # refused before anything was written (no reports/, no run lock)


@pytest.mark.parametrize("bad", ["../evil", ".hidden", "a/b", "''"])
def test_pipeline_refuses_a_bad_run(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"override 'run=.*': run: .* is not a valid run name"):
        load_config(ROOT / "configs" / "demo.yaml", [f"run={bad}"])
    assert cli.main(["pipeline", "--config", str(ROOT / "configs" / "demo.yaml"), f"run={bad}", "--list"]) == 2
    assert "run: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b"])
def test_distill_config_refuses_a_bad_results_run(bad):
    with pytest.raises(ConfigError, match=f"^results_run: {bad!r} is not a valid run name"):
        recipe.load_config(None, [f"results_run={bad}"])
    assert recipe.load_config(None, ["results_run="])["results_run"] == ""  # "" = record nothing


def test_pytest_refuses_a_bad_run(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text("def test_probe():\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--run", "../x",
                          "-o", "addopts=", "test_probe.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 4, out.stdout + out.stderr  # pytest's usage error
    assert "--run: '../x' is not a valid run name" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conftest.py", "test_probe.py"]
