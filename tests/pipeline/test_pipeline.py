"""``sam3m4 pipeline``: config checks, the stage list, resume-by-hash, failures, the run manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sam3m4.errors import ConfigError
from sam3m4.pipeline.runner import StageFailed, run_stages
from sam3m4.pipeline.stages import Stage, build_stages, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_load_and_give_the_documented_order(monkeypatch):
    monkeypatch.chdir(ROOT)
    demo = [s.name for s in build_stages(load_config("configs/demo.yaml"))]
    assert demo[:8] == ["data", "data-check", "teacher", "phase1", "phase2", "video-teacher", "video", "quantize"]
    assert demo[-4:] == ["visual-qa", "acceptance", "prune", "report"]
    prune = build_stages(load_config("configs/demo.yaml"))[-2]
    assert prune.then == [prune.argv + ["--apply"]]  # the dry run, then --apply of exactly what it listed
    assert {"export-xnnpack", "export-coreml", "export-qnn"} <= set(demo)
    stages = {s.name: s for s in build_stages(load_config("configs/demo.yaml"))}
    ship = stages["export-xnnpack"].argv  # exactly Stage 4's decision for the backend, scored on its val pairs
    assert ship[ship.index("--mode") + 1] == "chosen" and ship[ship.index("--num-val") + 1] == "200"
    acceptance = stages["acceptance"].argv
    assert acceptance[acceptance.index("--stage5-decision") + 1] == "checkpoints/quantized/decision.json"
    assert "--stage5-cases" not in acceptance  # the demo adds no extra case
    real = load_config("configs/m4pro.yaml")
    names = [s.name for s in build_stages(real)]
    extra = next(s for s in build_stages(real) if s.name == "export-coreml-fp16").argv  # an extra case, marked
    assert extra[extra.index("--shipped") + 1] == "extra" and "export-coreml" in names
    assert "data" not in names and "teacher" not in names and "video-teacher" not in names  # real SAM 3, real data
    assert next(s for s in build_stages(real) if s.name == "prune").then == [] and real["device"] == "mps"
    phase1 = next(s for s in build_stages(real) if s.name == "phase1")
    assert "teacher=facebook/sam3" in phase1.argv and "mps" in phase1.argv


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("run: x\nvideo_stpes: 3\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: video_stpes: unknown key"):
        load_config(bad)
    bad.write_text("video_steps: many\n")
    with pytest.raises(ConfigError, match=r"video_steps: expected int"):
        load_config(bad)
    bad.write_text("exports: [xnnpack]\n")
    with pytest.raises(ConfigError, match=r"exports: 'xnnpack' is not backend:mode"):
        load_config(bad)
    bad.write_text("ship: [xnnpak]\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: ship: 'xnnpak' is not a backend"):
        load_config(bad)
    good = tmp_path / "g.yaml"
    good.write_text("run: x\n")
    assert load_config(good, ["video_steps=7", "run=y"])["video_steps"] == 7
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(good, ["video_steps"])


def _writer(out: Path, src: Path | None = None, tag: str = "") -> list[str]:
    """A stage command: write ``out`` from ``src``'s text (+ tag) and append a line to ran.txt."""
    code = (f"import pathlib; src = {str(src)!r}; t = pathlib.Path(src).read_text() if src != 'None' else ''; "
            f"pathlib.Path({str(out)!r}).write_text(t + {tag!r}); "
            f"open({str(out.parent / 'ran.txt')!r}, 'a').write({out.name!r} + '\\n')")
    return [sys.executable, "-c", code]


def _chain(tmp_path: Path) -> list[Stage]:
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "config.txt"
    return [Stage("make-a", _writer(a, c, "A"), inputs=[str(c)], outputs=[str(a)]),
            Stage("make-b", _writer(b, a, "B"), inputs=[str(a)], outputs=[str(b)])]


def _ran(tmp_path: Path) -> list[str]:
    log = tmp_path / "ran.txt"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_rerun_skips_unchanged_stages_and_redoes_what_a_change_feeds(tmp_path, capsys):
    (tmp_path / "config.txt").write_text("v1")
    state = tmp_path / "state.json"
    assert [o.status for o in run_stages(_chain(tmp_path), state)] == ["ran", "ran"]
    assert _ran(tmp_path) == ["a.txt", "b.txt"] and (tmp_path / "b.txt").read_text() == "v1AB"
    saved = json.loads(state.read_text())["stages"]  # start and end of each stage: the report's timeline
    a, b = saved["make-a"], saved["make-b"]
    assert a["started"] <= a["finished"] <= b["started"] <= b["finished"], saved
    assert [o.status for o in run_stages(_chain(tmp_path), state)] == ["skipped", "skipped"]
    assert _ran(tmp_path) == [] and "skipped (inputs, command and outputs unchanged" in capsys.readouterr().out
    (tmp_path / "config.txt").write_text("v2")  # an input changed: the stage and everything downstream re-run
    run_stages(_chain(tmp_path), state)
    assert _ran(tmp_path) == ["a.txt", "b.txt"] and (tmp_path / "b.txt").read_text() == "v2AB"
    (tmp_path / "b.txt").write_text("edited by hand")  # an output changed: only that stage re-runs
    run_stages(_chain(tmp_path), state)
    assert _ran(tmp_path) == ["b.txt"]
    (tmp_path / "b.txt").unlink()  # a missing output too
    run_stages(_chain(tmp_path), state)
    assert _ran(tmp_path) == ["b.txt"]
    stages = _chain(tmp_path)
    stages[1].argv = _writer(tmp_path / "b.txt", tmp_path / "a.txt", "C")  # a changed command
    run_stages(stages, state)
    assert _ran(tmp_path) == ["b.txt"] and (tmp_path / "b.txt").read_text() == "v2AC"
    run_stages(_chain(tmp_path), state, force=True)
    assert _ran(tmp_path) == ["a.txt", "b.txt"]


def test_a_failing_stage_stops_the_pipeline_and_is_redone_next_time(tmp_path):
    (tmp_path / "config.txt").write_text("v1")
    state = tmp_path / "state.json"
    fail = Stage("broken", [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(StageFailed, match=r"stage broken failed \(exit 3\)"):
        run_stages([*_chain(tmp_path), fail, Stage("after", _writer(tmp_path / "z.txt"))], state,
                   log_dir=tmp_path / "logs")
    assert _ran(tmp_path) == ["a.txt", "b.txt"] and not (tmp_path / "z.txt").exists()
    assert "broken" not in json.loads(state.read_text())["stages"]
    two = Stage("two", _writer(tmp_path / "x.txt"), then=[_writer(tmp_path / "y.txt")])
    fails_first = Stage("first-fails", [sys.executable, "-c", "raise SystemExit(4)"], then=[_writer(tmp_path / "w.txt")])
    run_stages([two], state)
    assert _ran(tmp_path) == ["x.txt", "y.txt"]  # argv, then the `then` commands, as one stage
    with pytest.raises(StageFailed, match="exit 4"):
        run_stages([fails_first], state)
    assert not (tmp_path / "w.txt").exists()
    allowed = Stage("gates", [sys.executable, "-c", "raise SystemExit(1)"], allow_fail=True)
    outcomes = run_stages([*_chain(tmp_path), allowed, Stage("after", _writer(tmp_path / "z.txt"))], state)
    assert [o.status for o in outcomes] == ["skipped", "skipped", "failed (allowed)", "ran"]


def test_manifest_lists_artifacts_with_sha256_and_fills_report_sections_1_and_6(tmp_path, monkeypatch):
    from sam3m4.pipeline.artifacts import write_manifest
    from sam3m4.report import render_report

    monkeypatch.chdir(tmp_path)
    for p, data in [("checkpoints/distillation/phase2_best.pt", b"p2"), ("outputs/export/m_xnnpack_int8_int4.pte", b"pte"),
                    ("checkpoints/video_distillation/video_epoch2.pt", b"v"), ("checkpoints/quantized/int4/model.safetensors", b"q")]:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        Path(p).write_bytes(data)
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["run=m"])
    out = write_manifest(cfg, "configs/demo.yaml")
    manifest = json.loads(out.read_text())
    paths = {a["path"]: a for a in manifest["artifacts"]}
    assert paths["outputs/export/m_xnnpack_int8_int4.pte"]["bytes"] == 3
    assert paths["checkpoints/distillation/phase2_best.pt"]["sha256"].startswith("3946ca")  # sha256(b"p2")
    report = render_report("m", targets_path=ROOT / "acceptance" / "targets.yaml").read_text()
    assert "| 최종 비디오 ckpt | `checkpoints/video_distillation/video_epoch2.pt`" in report
    assert "- 배포 바이너리(.pte): `outputs/export/m_xnnpack_int8_int4.pte`, 3 B, sha256" in report


def test_stages_of_one_group_run_together_and_a_failure_still_saves_the_others(tmp_path):
    """Each stage of the group announces itself, then waits until every stage of the group has: run one after
    the other, the first would never see the others and fails. No clock decides the verdict (a slow host only
    waits longer; the 600 s cap is only there so a broken runner cannot hang the suite)."""

    def stage_cmd(name, rc=0, wait_for=()):
        code = (f"import pathlib, time, sys; d = pathlib.Path({str(tmp_path)!r}); (d / '{name}.started').write_text('x')\n"
                f"for _ in range(6000):\n"
                f"    if all((d / (n + '.started')).exists() for n in {list(wait_for)!r}): break\n"
                f"    time.sleep(0.1)\n"
                f"else: sys.exit(3)\n"
                f"(d / '{name}').write_text('x'); raise SystemExit({rc})")
        return [sys.executable, "-c", code]
    state = tmp_path / "state.json"
    names = [f"s{k}" for k in range(3)]
    group = [Stage(n, stage_cmd(n, wait_for=names), outputs=[str(tmp_path / n)], group="g") for n in names]
    assert [o.status for o in run_stages(group, state, jobs=3)] == ["ran"] * 3
    mixed = [Stage("ok", stage_cmd("ok"), outputs=[str(tmp_path / "ok")], group="h"),
             Stage("bad", stage_cmd("bad", rc=2), group="h")]
    with pytest.raises(StageFailed, match="stage bad failed"):
        run_stages(mixed, state, jobs=2)
    assert set(json.loads(state.read_text())["stages"]) == {"s0", "s1", "s2", "ok"}


def _marker_cmd(d: Path, name: str, wait_for: str = "", forbid: str = "") -> list[str]:
    """A stage command: create ``<name>.running``; wait for ``<wait_for>.running`` (exit 3 when it never comes);
    exit 4 when another ``<forbid>.running`` shows up within 2 s; write ``<name>`` and remove its marker."""
    code = (f"import pathlib, time, sys; d = pathlib.Path({str(d)!r}); m = d / '{name}.running'; m.write_text('x')\n"
            f"for _ in range(20 if {forbid!r} else 0):  # 2 s: a stage started beside it shows itself by then\n"
            f"    if [p for p in d.glob({forbid!r} + '.running') if p != m]: sys.exit(4)\n"
            f"    time.sleep(0.1)\n"
            f"for _ in range(6000 if {wait_for!r} else 0):\n"
            f"    if (d / ({wait_for!r} + '.running')).exists() or (d / {wait_for!r}).exists(): break\n"
            f"    time.sleep(0.1)\n"
            f"else:\n"
            f"    if {wait_for!r}: sys.exit(3)\n"
            f"(d / '{name}').write_text('x'); m.unlink()")
    return [sys.executable, "-c", code]


def test_a_stage_runs_beside_a_chain_it_does_not_depend_on_and_a_solo_stage_runs_alone(tmp_path):
    """``video-teacher`` beside Phase 1 -> 2: it reads only what both read, so it starts as soon as that exists and
    shows itself to Phase 1 (which waits for it: run one after the other, Phase 1 would exit 3). The solo stage
    (it times something) finds no other stage running; the order of the outcomes is the table's. No clock decides
    the verdict (the 600 s cap only stops a broken runner from hanging the suite)."""
    d = tmp_path
    src = d / "teacher"
    src.write_text("t")
    stages = [Stage("phase1", _marker_cmd(d, "phase1", wait_for="vteacher"), inputs=[str(src)], outputs=[str(d / "phase1")]),
              Stage("phase2", _marker_cmd(d, "phase2"), inputs=[str(d / "phase1")], outputs=[str(d / "phase2")]),
              Stage("vteacher", _marker_cmd(d, "vteacher"), inputs=[str(src)], outputs=[str(d / "vteacher")]),
              Stage("bench", _marker_cmd(d, "bench", forbid="*"), inputs=[str(d / "phase2")], solo=True),
              Stage("late", _marker_cmd(d, "late"), inputs=[str(src)], outputs=[str(d / "late")])]
    outcomes = run_stages(stages, d / "state.json", jobs=2)
    assert [(o.name, o.status, o.rc) for o in outcomes] == [(s.name, "ran", 0) for s in stages]
    saved = json.loads((d / "state.json").read_text())["stages"]
    assert saved["late"]["started"] >= saved["bench"]["finished"] >= saved["bench"]["started"] >= saved["phase2"]["finished"]


def test_the_demo_table_says_what_waits_for_what():
    """Derived from what each stage reads and writes: the video teacher needs only the teacher, so it runs beside
    Phase 1 / 2; the stages that time something (video, quantize) and the prune run alone; the exports and the visual
    QA never wait for each other; the acceptance stage waits for every .pte."""
    from sam3m4.pipeline.runner import dependencies

    stages = build_stages(load_config(ROOT / "configs" / "demo.yaml"))
    names = [s.name for s in stages]
    waits = {s.name: {names[j] for j in need} for s, need in zip(stages, dependencies(stages, hooked={"prune"}))}
    assert waits["teacher"] == {"data"} and waits["phase1"] == {"data", "teacher"}
    assert waits["video-teacher"] == {"data", "teacher"}
    assert waits["video"] == set(names[:names.index("video")])
    assert waits["quantize"] == set(names[:names.index("quantize")])
    assert waits["export-coreml"] >= {"quantize"} and not waits["export-coreml"] & {"export-xnnpack", "visual-qa"}
    assert not waits["visual-qa"] & {"export-xnnpack", "export-coreml", "export-qnn"}
    assert waits["acceptance"] >= {"export-xnnpack", "export-coreml", "export-qnn", "quantize", "video"}
    assert waits["prune"] == set(names[:names.index("prune")]) and waits["report"] == set(names[:-1])


def test_clock_rounds_before_splitting_minutes():
    from sam3m4.pipeline.runner import _clock

    assert _clock(1139.99) == "19m00.0s" and _clock(59.96) == "1m00.0s" and _clock(187.54) == "3m07.5s"


def test_a_stage_log_file_gets_no_progress_bar_redraws_from_libraries(tmp_path):
    """A library's tqdm (coremltools' MIL passes leave ``disable`` at its default) writes no bar into a stage log;
    a bar that asks for one explicitly (``disable=False``) still can: only the default is changed."""
    code = ("import sys, tqdm; [None for _ in tqdm.tqdm(range(50), desc='lib-default', file=sys.stdout, mininterval=0)]; "
            "[None for _ in tqdm.tqdm(range(2), desc='explicit', disable=False, file=sys.stdout)]")
    run_stages([Stage("bars", [sys.executable, "-c", code])], tmp_path / "state.json", log_dir=tmp_path / "logs")
    log = (tmp_path / "logs" / "bars.log").read_text()
    assert "lib-default" not in log and "explicit" in log, log
