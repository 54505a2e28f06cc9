"""``sam3m4 pipeline --list`` of every shipped config stays byte-identical (``fixtures/pipeline/list.txt``), and
so does every stage's record: command, inputs, outputs and flags (``fixtures/pipeline/stages.json``; the runner
hashes them, so a change there re-runs stages of a finished run).

After a change to the stages that is meant, rewrite both files and review their diff:

    python tests/pipeline/test_pipeline_golden.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())  # the project root
GOLDEN = ROOT / "fixtures" / "pipeline"

# every shipped pipeline config, and the keys that add, drop or reshape stages
CASES = (
    ("configs/demo.yaml",),
    ("configs/m4pro.yaml",),
    ("configs/rehearsal.yaml",),
    ("configs/demo.yaml", "run=try2", "ship=[xnnpack]", "exports=[coreml:fp16,qnn:int8_int4]"),
    ("configs/demo.yaml", "ship=[]", "teacher_full=true", "video_teacher_build=false", "prune_apply=false",
     "visual_auto_checklist=false", "plan_for=configs/m4pro.yaml"),
    ("configs/demo.yaml", "work_dir=scratch", "synth_image_size=128", "synth_video_size=96", "synth_frames=8",
     "student_preset=repvit_m0_9_504", "batch_size=4", "phase2_epochs=3", "phase1_overrides=[threads=1]",
     "video_args=[--threads,1]", "quantize_args=[--runs,3]", "export_args=[--runs,5]"),
    ("configs/demo.yaml", "synth_images=0", "teacher_bootstrap=", "video_teacher=checkpoints/teacher/sam3-tiny-synth",
     "video_teacher_build=false", "acceptance=[acceptance/test_stage4.py]", "qat=never", "device=cpu"),
    ("configs/m4pro.yaml", "ship=[]", "exports=[]", "work_dir=m4", "prune_keep_last=0"),
)


def _list(case: tuple[str, ...]) -> str:
    from sam3m4.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["pipeline", "--config", *case, "--list"]) == 0
    return out.getvalue()


def render_list() -> str:
    return "".join(f"$ sam3m4 pipeline --config {' '.join(case)} --list\n{_list(case)}" for case in CASES)


def render_stages() -> str:
    """Stages built in a folder that holds only the project's ``configs/``, so inputs that depend on what is on
    disk (an external teacher is an input only when it exists) read the same in a fresh clone and a used one."""
    import shutil
    import tempfile

    from sam3m4.pipeline.stages import build_stages, load_config

    def words(argv):
        return ["python" if a == sys.executable else a for a in argv]

    out, here = {}, os.getcwd()
    configs = {" ".join(case): load_config(case[0], list(case[1:])) for case in CASES}
    with tempfile.TemporaryDirectory() as empty:
        shutil.copytree(ROOT / "configs", Path(empty) / "configs")
        os.chdir(empty)
        try:
            for case, cfg in configs.items():
                out[case] = [{"name": s.name, "argv": words(s.argv), "then": [words(t) for t in s.then],
                              "inputs": s.inputs, "outputs": s.outputs, "allow_fail": s.allow_fail,
                              "always": s.always, "group": s.group, "solo": s.solo}
                             for s in build_stages(cfg)]
        finally:
            os.chdir(here)
    return "{\n" + ",\n".join(f"{json.dumps(case)}: [\n" + ",\n".join(json.dumps(s) for s in stages) + "]"
                                for case, stages in out.items()) + "\n}\n"  # one stage a line: diffs read well


def test_pipeline_list_of_the_shipped_configs_is_unchanged(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert render_list() == (GOLDEN / "list.txt").read_text()


def test_every_stage_record_of_the_shipped_configs_is_unchanged(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert json.loads(render_stages()) == json.loads((GOLDEN / "stages.json").read_text())


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "list.txt").write_text(render_list())
    (GOLDEN / "stages.json").write_text(render_stages())
    print(f"wrote {GOLDEN}/list.txt and stages.json")
