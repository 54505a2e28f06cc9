"""Pipeline config (flat YAML) -> the ordered list of :class:`Stage` s.

    from sam3m4.pipeline.stages import load_config, build_stages
    cfg = load_config("configs/demo.yaml", ["run=mine"])
    for s in build_stages(cfg): print(s.name, s.argv)

Every stage is a command another person could paste into a shell (``python -m sam3m4 ...`` or
``python -m pytest ...``) plus the files it reads and writes. The runner hashes both, so the list below is
also the pipeline's dependency record. Paths are relative to the project root (the working directory).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from sam3m4 import config
from sam3m4.errors import ConfigError
from sam3m4.paths import (ACCEPTANCE_HTML, DISTILL_DIR, DISTILL_LOG_DIR, EXPORT_DIR, PHASE2_BEST, PRUNE_ROOTS,
                          QUANTIZED_DIR, SYNTH_DATA, TEACHER_DIR, VIDEO_CACHE_DIR, VIDEO_DIR, VIDEO_EPOCHS,
                          VIDEO_TEACHER_DIR, VISUAL_INDEX, best_checkpoint, run_dir, video_checkpoint, visual_dir)
from sam3m4.quantize.decision import BACKEND_MODES, DECISION_FILE
from sam3m4.results.runs import check_run_name

DEFAULTS = {
    "run": "demo", "device": "auto",
    "data_root": SYNTH_DATA, "video_data_root": SYNTH_DATA, "synth_images": 600, "synth_videos": 24, "seed": 0,
    "teacher": TEACHER_DIR, "teacher_bootstrap": "configs/teacher_bootstrap.yaml",
    "video_teacher": VIDEO_TEACHER_DIR, "video_teacher_build": True,
    "phase1_config": "configs/distill_phase1.yaml", "phase2_config": "configs/distill_phase2.yaml",
    "video_steps": 600, "quant_num_val": 200, "qat": "always",
    "ship": ["xnnpack", "coreml", "qnn"],  # backends whose Stage 4 decision (decision.json) Stage 5 exports
    "exports": [],                          # extra backend:mode cases, exported and gated as extras
    "visual_manifest": "configs/visual_eval/image_manifest_phase2.txt",
    "visual_prompts": "configs/visual_eval/prompts_core.txt", "visual_auto_checklist": True,
    "stage3_num_val": 300, "acceptance": ["acceptance/test_stage3.py", "acceptance/test_stage3_video.py",
                                          "acceptance/test_stage4.py", "acceptance/test_stage5.py"],
    "prune_keep_last": 2, "prune_apply": True,
    # --- added for the real run and its rehearsal (the defaults leave the demo's commands unchanged) ---
    "work_dir": "",                 # "" = checkpoints/, logs/, outputs/ at the project root; else under work_dir/
    "synth_image_size": 224, "synth_video_size": 0, "synth_frames": 16,  # synth data (video size 0 = image size)
    "teacher_full": False,          # write `teacher` as a full-size SAM 3 with random weights (sam3m4 teacher full)
    "student_preset": "", "student_init": "",  # "" = the distill configs' own value
    "phase1_epochs": 0, "phase2_epochs": 0, "batch_size": 0,  # 0 = the distill configs' own value
    "phase1_overrides": [], "phase2_overrides": [],  # more key=value for the distill configs
    "video_args": [], "quantize_args": [], "export_args": [],  # more flags for those stages' commands
    "plan_for": "",                 # a pipeline config: write reports/<run>/plan.md for its dataset_size
    "dataset_size": {},             # images, image_pairs, videos, video_pairs, frames of the real data
}
DATASET_SIZE_KEYS = ("images", "image_pairs", "videos", "video_pairs", "frames")
# the whole-number keys and their least value (checked when the config is read, before any stage runs)
MINIMUM = {"synth_images": 0, "synth_videos": 0, "seed": 0, "video_steps": VIDEO_EPOCHS, "quant_num_val": 1,
           "stage3_num_val": 1, "prune_keep_last": 0, "synth_image_size": 16, "synth_video_size": 0,
           "synth_frames": 1, "phase1_epochs": 0, "phase2_epochs": 0, "batch_size": 0}


def under(cfg: dict, path: str) -> str:
    """``path`` (relative to the project root) inside the run's ``work_dir`` (unchanged when it is "")."""
    return f"{cfg['work_dir'].rstrip('/')}/{path}" if cfg.get("work_dir") else path


@dataclass
class Stage:
    """One step of the pipeline."""

    name: str
    """Short id, shown in the progress line and used as the key of the run state."""
    argv: list[str]
    """The command (``argv[0]`` is this Python); run from the project root."""
    inputs: list[str] = field(default_factory=list)
    """Files / folders / globs it reads (hashed: a change re-runs the stage and everything it feeds)."""
    outputs: list[str] = field(default_factory=list)
    """Files / folders / globs it writes (hashed: a missing or edited output re-runs the stage)."""
    allow_fail: bool = False
    """True: a non-zero exit is reported and the pipeline goes on (QNN without its SDK, failing gates)."""
    then: list[list[str]] = field(default_factory=list)
    """Commands run after ``argv`` succeeded, as part of the same stage (``prune --apply`` after its dry run)."""
    always: bool = False
    """True: run every time (cheap bookkeeping: the report)."""
    group: str | None = None
    """Consecutive stages with the same group run concurrently (independent work that reads the same inputs)."""

    def commands(self) -> list[list[str]]:
        return [self.argv, *self.then]


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read a pipeline config (:func:`sam3m4.config.load_config`, typed by ``DEFAULTS``); unknown keys and bad
    ``key=value`` overrides are one-line errors naming the key."""
    path = Path(path)
    typed = config.load_config(path, overrides, DEFAULTS)
    cfg, where = dict(typed), typed.origins
    check_run_name(cfg["run"], f"{where.get('run', path)}: run")  # reports/<run>/ holds the state and report
    for key, least in MINIMUM.items():
        if cfg[key] < least:
            raise ConfigError(f"{where.get(key, path)}: {key}: expected a whole number >= {least}, got {cfg[key]}")
    for case in cfg["exports"]:
        if not isinstance(case, str) or case.count(":") != 1 or "" in case.split(":"):
            raise ConfigError(f"{where.get('exports', path)}: exports: {case!r} is not backend:mode")
    for item in cfg["acceptance"]:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where.get('acceptance', path)}: acceptance: {item!r} is not a test file path")
    for backend in cfg["ship"]:
        if not isinstance(backend, str) or backend not in BACKEND_MODES:
            raise ConfigError(f"{where.get('ship', path)}: ship: {backend!r} is not a backend; choices: "
                              f"{', '.join(BACKEND_MODES)}")
    for key in ("phase1_overrides", "phase2_overrides"):
        for item in cfg[key]:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"{where.get(key, path)}: {key}: {item!r} is not key=value")
    for key in ("video_args", "quantize_args", "export_args"):
        for item in cfg[key]:
            if isinstance(item, (list, dict)) or item is None:
                raise ConfigError(f"{where.get(key, path)}: {key}: {item!r} is not a command-line word")
        cfg[key] = [str(a) for a in cfg[key]]
    for key, value in cfg["dataset_size"].items():
        if key not in DATASET_SIZE_KEYS or isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where.get('dataset_size', path)}: dataset_size: {key}: expected one of "
                              f"{', '.join(DATASET_SIZE_KEYS)} with a whole number >= 0, got {value!r}")
    return cfg


def _sam3m4(*args) -> list[str]:
    return [sys.executable, "-m", "sam3m4", *map(str, args)]


def _phase_best(distill_config: str, phase: int, cfg: dict | None = None) -> str:
    """``<ckpt_dir>/phase{P}_best.pt`` of a distillation config (its ``checkpoint_dir``, default checkpoints/distillation;
    ``<work_dir>/checkpoints/distillation`` when the pipeline sets ``work_dir``)."""
    if cfg is not None and cfg.get("work_dir"):
        return best_checkpoint(phase, under(cfg, DISTILL_DIR))
    return best_checkpoint(phase, config.read_yaml(distill_config).get("checkpoint_dir", DISTILL_DIR))


def distill_overrides(cfg: dict, phase: int) -> list[str]:
    """The pipeline keys that reach a distillation stage as ``key=value`` (none for the demo's defaults)."""
    out = []
    for key, name in (("student_preset", "student_preset"), ("student_init", "student_init"),
                      (f"phase{phase}_epochs", "epochs"), ("batch_size", "batch_size")):
        if cfg[key]:
            out.append(f"{name}={cfg[key]}")
    if cfg["work_dir"]:
        out += [f"checkpoint_dir={under(cfg, DISTILL_DIR)}", f"log_dir={under(cfg, DISTILL_LOG_DIR)}"]
    return out + list(cfg[f"phase{phase}_overrides"])


def build_stages(cfg: dict) -> list[Stage]:
    """The ordered stages for ``cfg``: data -> teacher -> Phase 1/2 -> video -> quantize -> export -> visual QA
    -> acceptance -> storage prune (dry run, then ``--apply`` of exactly that) [-> the cost plan, when ``plan_for``
    names the real run's config] -> report (the manifest is written by the runner before the prune)."""
    run, data, vdata, teacher = cfg["run"], cfg["data_root"], cfg["video_data_root"], cfg["teacher"]
    work = cfg["work_dir"]
    phase2_best, video_dir, quantized, export_dir = (under(cfg, p) for p in (PHASE2_BEST, VIDEO_DIR, QUANTIZED_DIR, EXPORT_DIR))
    data_in = [f"{data}/saco_image"]
    stages = []
    if cfg["synth_images"] > 0:
        sizes = []  # only what differs from the generator's defaults: the demo's command stays as it was
        if cfg["synth_image_size"] != DEFAULTS["synth_image_size"]:
            sizes += ["--image-size", cfg["synth_image_size"]]
        if cfg["synth_video_size"]:
            sizes += ["--video-size", cfg["synth_video_size"]]
        if cfg["synth_frames"] != DEFAULTS["synth_frames"]:
            sizes += ["--frames", cfg["synth_frames"]]
        stages.append(Stage("data", _sam3m4("data", "synth", "--out", data, "--images", cfg["synth_images"],
                                            "--videos", cfg["synth_videos"], "--seed", cfg["seed"], *sizes),
                            outputs=[f"{data}/saco_image", f"{data}/saco_video", f"{data}/manifest.json"]))
    stages.append(Stage("data-check", _sam3m4("eval", "--model", "gt", "--data", data, "--split", "val", "--run", run),
                        inputs=data_in + [f"{vdata}/saco_video"]))
    teacher_in = [teacher] if Path(teacher).exists() or cfg["teacher_bootstrap"] or cfg["teacher_full"] else []
    if cfg["teacher_full"]:
        stages.append(Stage("teacher", _sam3m4("teacher", "full", "--out", teacher, "--seed", cfg["seed"]),
                            outputs=[teacher]))
    elif cfg["teacher_bootstrap"]:
        stages.append(Stage("teacher", _sam3m4("teacher", "bootstrap", "--config", cfg["teacher_bootstrap"],
                                               f"data_root={data}", f"out_dir={teacher}"),
                            inputs=data_in + [cfg["teacher_bootstrap"]], outputs=[teacher]))
    phase1, phase2 = _phase_best(cfg["phase1_config"], 1, cfg), _phase_best(cfg["phase2_config"], 2, cfg)
    for phase, distill_config, best, prev in ((1, cfg["phase1_config"], phase1, []),
                                              (2, cfg["phase2_config"], phase2, [phase1])):
        stages.append(Stage(f"phase{phase}", _sam3m4("distill", f"phase{phase}", "--config", distill_config, "--device",
                                                     cfg["device"], f"data_root={data}", f"teacher={teacher}",
                                                     *distill_overrides(cfg, phase)),
                            inputs=data_in + teacher_in + [distill_config] + prev, outputs=[best]))
    vteacher = cfg["video_teacher"]
    if cfg["video_teacher_build"]:
        stages.append(Stage("video-teacher", _sam3m4("teacher", "video", "--image-teacher", teacher, "--out", vteacher,
                                                     "--data", vdata),
                            inputs=teacher_in + [f"{vdata}/saco_video"], outputs=[vteacher]))
    video_ckpt = video_checkpoint(VIDEO_EPOCHS, video_dir)
    vteacher_in = [vteacher] if cfg["video_teacher_build"] or Path(vteacher).exists() or vteacher == teacher and teacher_in else []
    where = ["--out", video_dir, "--log-dir", under(cfg, DISTILL_LOG_DIR), "--cache-dir",
             under(cfg, VIDEO_CACHE_DIR)] if work else []
    stages.append(Stage("video", _sam3m4("distill", "video", "--ckpt", phase2, "--teacher", vteacher, "--data", vdata,
                                         "--steps", cfg["video_steps"], "--epochs", VIDEO_EPOCHS, "--run", run, *where,
                                         *cfg["video_args"]),
                        inputs=[phase2, f"{vdata}/saco_video"] + vteacher_in, outputs=[video_ckpt]))
    stages.append(Stage("quantize", _sam3m4("quantize", "--mode", "compare", "--ckpt", video_ckpt, "--data", data,
                                            "--num-val", cfg["quant_num_val"], "--qat", cfg["qat"], "--out", quantized,
                                            "--run", run, *cfg["quantize_args"]),
                        inputs=[video_ckpt] + data_in, outputs=[quantized]))
    scored = ["--num-val", cfg["quant_num_val"], "--data", data]  # the deployed .pte on Stage 4's val pairs
    for backend in cfg["ship"]:  # exactly what Stage 4 decided for the backend (quantize/decision.json)
        stages.append(Stage(f"export-{backend}", _sam3m4("export", "--backend", backend, "--mode", "chosen",
                                                         "--quantized", quantized, "--out", export_dir, "--run", run,
                                                         *scored, *cfg["export_args"]),
                            inputs=[quantized, *data_in], outputs=[f"{export_dir}/*_{backend}_*.pte"],
                            allow_fail=True, group="export"))
    for case in cfg["exports"]:  # extra cases of the config, recorded as extras
        backend, mode = case.split(":")
        stages.append(Stage(f"export-{backend}-{mode}", _sam3m4("export", "--backend", backend, "--mode", mode,
                                                                "--shipped", "extra", "--quantized", quantized,
                                                                "--out", export_dir, "--run", run, *scored,
                                                                *cfg["export_args"]),
                            inputs=[f"{quantized}/{mode}", f"{quantized}/{DECISION_FILE}", *data_in],
                            outputs=[f"{export_dir}/*_{backend}_{mode}*.pte"], allow_fail=True, group="export"))
    visual = _sam3m4("visual-eval", "--manifest", cfg["visual_manifest"], "--prompts", cfg["visual_prompts"],
                     "--teacher", teacher, "--student", phase2, "--run", run, "--threads", 1)
    stages.append(Stage("visual-qa", visual + (["--auto-checklist"] if cfg["visual_auto_checklist"] else []),
                        inputs=teacher_in + [phase2, cfg["visual_manifest"], cfg["visual_prompts"]],
                        outputs=[f"{visual_dir(run)}/{VISUAL_INDEX}"], group="export"))
    html = f"{run_dir(run)}/{ACCEPTANCE_HTML}"
    cases = ["--stage5-decision", f"{quantized}/{DECISION_FILE}", "--stage4-num-val", str(cfg["quant_num_val"])]
    cases += ["--stage5-cases", ",".join(cfg["exports"])] if cfg["exports"] else []
    pytest = [sys.executable, "-m", "pytest", *cfg["acceptance"], "-o", "addopts=", "-p", "no:cacheprovider", "-q",
              "--run", run, "--stage3-teacher", teacher, "--stage3-student", phase2, "--stage3-data", data,
              "--stage3-num-val", str(cfg["stage3_num_val"]), "--stage4-dir", quantized, "--stage4-data", data,
              "--stage5-quantized", quantized, *cases, f"--html={html}", "--self-contained-html"]
    stages.append(Stage("acceptance", pytest, allow_fail=True, outputs=[html],
                        inputs=teacher_in + [phase2, video_ckpt, quantized, f"{export_dir}/*.pte", "acceptance",
                                             "conftest.py"]))
    prune = _sam3m4("prune", "--keep-last", cfg["prune_keep_last"], "--run", run, *(["--root", work] if work else []))
    stages.append(Stage("prune", prune, then=[prune + ["--apply"]] if cfg["prune_apply"] else [],
                        inputs=[under(cfg, p) for p in PRUNE_ROOTS]))  # unchanged since the last prune: skipped
    if cfg["plan_for"]:  # before the report: it records the rehearsal's measurements, which the report shows
        stages.append(Stage("plan", _sam3m4("plan", "--run", run, "--for", cfg["plan_for"]), always=True))
    stages.append(Stage("report", _sam3m4("report", "--run", run), always=True))
    return stages
