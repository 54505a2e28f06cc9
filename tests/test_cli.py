"""CLI: help lists the subcommands, errors are one line with a non-zero exit, --debug shows the traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sam3m4.cli import COMMANDS, main


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sam3m4", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_lists_every_subcommand():
    out = _run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_help_imports_no_subcommand():
    """``sam3m4 --help`` lists the subcommands from COMMANDS alone: importing them all pulls in torch,
    transformers and ExecuTorch, seconds before a line of help."""
    code = ("import sys\nfrom sam3m4.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.endswith('.cli')),"
            " file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "['sam3m4.cli']"
    assert "visual-eval" in out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert "usage: sam3m4 " + name in capsys.readouterr().out


def test_error_is_one_line_and_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nope.json"
    out = _run("data", "check", str(missing))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("sam3m4: error:") and str(missing) in out.stderr
    debug = _run("--debug", "data", "check", str(missing))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_report_without_store_is_a_clear_error(tmp_path):
    out = _run("report", "--run", "absent", "--root", str(tmp_path))
    assert out.returncode == 2 and "no results store" in out.stderr


def test_synth_eval_report_chain(tmp_path):
    data = tmp_path / "synth"
    assert _run("data", "synth", "--out", str(data), "--images", "6", "--videos", "2", "--seed", "1",
                "--image-size", "96").returncode == 0
    check = _run("data", "check", str(data / "saco_image" / "val.json"), str(data / "saco_video" / "val.json"))
    assert check.returncode == 0, check.stderr
    assert "image," in check.stdout and "video," in check.stdout
    out = _run("eval", "--model", "gt", "--data", str(data), "--run", "cli", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mIoU 1.0000" in out.stdout
    rep = _run("report", "--run", "cli", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "ground_truth/image" in (tmp_path / "reports" / "cli" / "report.md").read_text()


def test_evaluate_is_a_library_call_with_a_typed_result(tmp_path):
    """``sam3m4 eval`` only parses: the same work is :func:`sam3m4.eval.evaluate.evaluate`, returning what it
    measured and recorded."""
    from sam3m4.data.synth import generate
    from sam3m4.eval.evaluate import EvalResult, evaluate
    from sam3m4.results import ResultsStore, schema

    data = tmp_path / "synth"
    generate(data, n_images=6, n_videos=2, seed=1, image_size=96, progress=False)
    store = ResultsStore("lib", root=tmp_path / "reports")
    res = evaluate("gt", data=data, store=store)
    assert isinstance(res, EvalResult) and (res.stage, res.subject) == (schema.SANITY, schema.GT_IMAGE)
    assert res.image.miou == 1.0 and res.video is not None and res.video.jf_mean == 1.0
    assert [(r.subject, r.metric) for r in res.records] == [
        (schema.GT_IMAGE, schema.MIOU), (schema.GT_IMAGE, schema.PRESENCE_F1), (schema.GT_IMAGE, schema.IL_MCC),
        (schema.GT_VIDEO, schema.JF), (schema.GT_VIDEO, schema.DAVIS_J), (schema.GT_VIDEO, schema.DAVIS_F)]
    assert [(r.subject, r.metric) for r in store.records()] == [(r.subject, r.metric) for r in res.records]
