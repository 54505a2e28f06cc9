"""Pipeline config (flat YAML) -> the ordered list of :class:`Stage` s.

    from sam3m4.pipeline.stages import load_config, build_stages
    cfg = load_config("configs/demo.yaml", ["run=mine"])
    for s in build_stages(cfg): print(s.name, s.argv)

Every stage is declared once, in :data:`STAGES`: its name, the library function it runs, its command line, the
files it reads and writes, and which pipeline config keys set the function's settings. ``sam3m4 pipeline`` runs
each as a command another person could paste into a shell (``python -m sam3m4 ...`` or ``python -m pytest ...``);
the acceptance fixtures call the same functions (:meth:`StageSpec.load`) with small settings. The runner hashes
commands and files, so the table is also the pipeline's dependency record. Paths are relative to the project root
(the working directory).

    from sam3m4.pipeline.stages import DEFAULTS, spec
    generate = spec("data").load()                   # sam3m4.data.synth.generate
    generate("data/mine", **spec("data").kwargs(DEFAULTS), progress=False)   # the demo's data, in another folder
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from sam3m4 import config
from sam3m4.errors import ConfigError
from sam3m4.paths import (ACCEPTANCE_HTML, DISTILL_DIR, DISTILL_LOG_DIR, EXPORT_DIR, PRUNE_ROOTS,
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
    """Stages of one group never wait for each other (independent work that reads the same inputs)."""
    solo: bool = False
    """True: runs alone, after every stage before it and before every stage after it (it times something on this
    host, or deletes what others read)."""

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


# --- the stage table: every stage declared once ----------------------------------------------------------------
def paths(cfg: dict) -> SimpleNamespace:
    """What the stages of ``cfg`` read and write, relative to the project root (``work_dir`` applied). A stage
    that repeats (:attr:`StageSpec.each`) sees its instance too: ``phase``, ``backend``, ``mode``."""
    run, data, teacher, vteacher = cfg["run"], cfg["data_root"], cfg["teacher"], cfg["video_teacher"]
    teacher_in = [teacher] if Path(teacher).exists() or cfg["teacher_bootstrap"] or cfg["teacher_full"] else []
    video_dir, quantized = under(cfg, VIDEO_DIR), under(cfg, QUANTIZED_DIR)
    return SimpleNamespace(
        cfg=cfg, run=run, work=cfg["work_dir"], data=data, vdata=cfg["video_data_root"], data_in=[f"{data}/saco_image"],
        teacher=teacher, teacher_in=teacher_in, vteacher=vteacher,
        vteacher_in=[vteacher] if (cfg["video_teacher_build"] or Path(vteacher).exists()
                                   or vteacher == teacher and teacher_in) else [],
        phase1=_phase_best(cfg["phase1_config"], 1, cfg), phase2=_phase_best(cfg["phase2_config"], 2, cfg),
        video_dir=video_dir, video_ckpt=video_checkpoint(VIDEO_EPOCHS, video_dir), quantized=quantized,
        decision=f"{quantized}/{DECISION_FILE}", export_dir=under(cfg, EXPORT_DIR),
        html=f"{run_dir(run)}/{ACCEPTANCE_HTML}", phase=0, backend="", mode="")


def _none(w: SimpleNamespace) -> list:
    return []


@dataclass(frozen=True)
class StageSpec:
    """One row of :data:`STAGES`. ``sam3m4 pipeline`` turns it into :class:`Stage` s (:meth:`stages`: a command
    line and the files it reads and writes); the acceptance fixtures call its :meth:`load` ed function with small
    settings, so both build the same stage with the same code."""

    key: str
    """Unique id of the row (:func:`spec`); ``teacher-full`` and ``teacher-bootstrap`` both make stage ``teacher``."""
    function: str
    """``module:name`` of the library function the stage's command runs (imported only by :meth:`load`)."""
    command: Callable[[SimpleNamespace], list]
    """The command's words after ``python -m <program>``, from :func:`paths` of the config."""
    inputs: Callable[[SimpleNamespace], list[str]] = _none
    """Files / folders / globs it reads (:attr:`Stage.inputs`)."""
    outputs: Callable[[SimpleNamespace], list[str]] = _none
    """Files / folders / globs it writes (:attr:`Stage.outputs`)."""
    settings: dict[str, str] = field(default_factory=dict)
    """``function``'s keyword -> the pipeline config key that sets it (:meth:`kwargs`; defaults: ``DEFAULTS``)."""
    config: str = ""
    """The pipeline config key naming the stage's own YAML settings file (``{phase}`` filled in), read by ``loader``."""
    loader: str = ""
    """``module:name`` reading that YAML file plus ``key=value`` overrides into ``function``'s settings."""
    name: str = ""
    """The stage's name, ``{phase}`` / ``{backend}`` / ``{mode}`` filled in ("" = ``key``)."""
    when: Callable[[dict], bool] = lambda cfg: True
    """Whether ``cfg`` has this stage at all."""
    each: Callable[[dict], list[dict]] = lambda cfg: [{}]
    """The stage's instances (phases, backends, export cases), in order."""
    program: str = "sam3m4"
    """``python -m <program>``: ``sam3m4`` or ``pytest``."""
    then: Callable[[SimpleNamespace], list[list]] = _none
    """Commands run after it, as part of the stage (:attr:`Stage.then`), as words like ``command``'s."""
    allow_fail: bool = False
    """:attr:`Stage.allow_fail`: a non-zero exit is reported and the pipeline goes on."""
    always: bool = False
    """:attr:`Stage.always`: run every time."""
    group: str | None = None
    """:attr:`Stage.group`: stages of one group never wait for each other."""
    solo: bool = False
    """:attr:`Stage.solo`: runs alone (it times something, or deletes what others read)."""

    def load(self) -> Callable:
        """The library function itself."""
        return _resolve(self.function)

    def kwargs(self, cfg: dict) -> dict:
        """``function``'s keywords as a pipeline config (e.g. ``DEFAULTS``, the demo's) sets them."""
        return {kw: cfg[key] for kw, key in self.settings.items()}

    def config_file(self, cfg: dict, **instance) -> str:
        """The stage's own YAML settings file in pipeline config ``cfg``."""
        return cfg[self.config.format(**instance)]

    def read_settings(self, path: str | Path, overrides: list[str] = ()) -> dict:
        """The stage's YAML settings file plus ``key=value`` overrides, read by its ``loader`` (keys checked)."""
        return _resolve(self.loader)(path, overrides)

    def stages(self, where: SimpleNamespace) -> list[Stage]:
        """One :class:`Stage` per instance, for the config whose :func:`paths` are ``where``."""
        out = []
        for instance in self.each(where.cfg):
            w = SimpleNamespace(**{**vars(where), **instance})
            argv = [sys.executable, "-m", self.program, *map(str, self.command(w))]
            out.append(Stage((self.name or self.key).format(**instance), argv, inputs=self.inputs(w),
                             outputs=self.outputs(w), allow_fail=self.allow_fail, always=self.always, group=self.group,
                             solo=self.solo,
                             then=[[sys.executable, "-m", self.program, *map(str, t)] for t in self.then(w)]))
        return out


def _resolve(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _synth(w: SimpleNamespace) -> list:
    cfg, sizes = w.cfg, []  # only what differs from the generator's defaults: the demo's command stays as it was
    if cfg["synth_image_size"] != DEFAULTS["synth_image_size"]:
        sizes += ["--image-size", cfg["synth_image_size"]]
    if cfg["synth_video_size"]:
        sizes += ["--video-size", cfg["synth_video_size"]]
    if cfg["synth_frames"] != DEFAULTS["synth_frames"]:
        sizes += ["--frames", cfg["synth_frames"]]
    return ["data", "synth", "--out", w.data, "--images", cfg["synth_images"], "--videos", cfg["synth_videos"],
            "--seed", cfg["seed"], *sizes]


def _distill(w: SimpleNamespace) -> list:
    return ["distill", f"phase{w.phase}", "--config", w.cfg[f"phase{w.phase}_config"], "--device", w.cfg["device"],
            f"data_root={w.data}", f"teacher={w.teacher}", *distill_overrides(w.cfg, w.phase)]


def _video(w: SimpleNamespace) -> list:
    where = ["--out", w.video_dir, "--log-dir", under(w.cfg, DISTILL_LOG_DIR), "--cache-dir",
             under(w.cfg, VIDEO_CACHE_DIR)] if w.work else []
    return ["distill", "video", "--ckpt", w.phase2, "--teacher", w.vteacher, "--data", w.vdata, "--steps",
            w.cfg["video_steps"], "--epochs", VIDEO_EPOCHS, "--run", w.run, *where, *w.cfg["video_args"]]


def _export(w: SimpleNamespace, *mode) -> list:
    """``sam3m4 export`` of ``w.backend`` scored on Stage 4's val pairs; ``mode`` its ``--mode`` [``--shipped``]."""
    return ["export", "--backend", w.backend, "--mode", *mode, "--quantized", w.quantized, "--out", w.export_dir,
            "--run", w.run, "--num-val", w.cfg["quant_num_val"], "--data", w.data, *w.cfg["export_args"]]


def _acceptance(w: SimpleNamespace) -> list:
    """pytest of the acceptance files on what the stages above wrote (the ``--stage*`` options of conftest.py)."""
    cfg = w.cfg
    return [*cfg["acceptance"], "-o", "addopts=", "-p", "no:cacheprovider", "-q", "--run", w.run,
            "--stage3-teacher", w.teacher, "--stage3-student", w.phase2, "--stage3-data", w.data,
            "--stage3-num-val", cfg["stage3_num_val"], "--stage4-dir", w.quantized, "--stage4-data", w.data,
            "--stage5-quantized", w.quantized, "--stage5-decision", w.decision,
            "--stage4-num-val", cfg["quant_num_val"],
            *(["--stage5-cases", ",".join(cfg["exports"])] if cfg["exports"] else []), f"--html={w.html}",
            "--self-contained-html"]


def _prune(w: SimpleNamespace) -> list:
    return ["prune", "--keep-last", w.cfg["prune_keep_last"], "--run", w.run, *(["--root", w.work] if w.work else [])]


STAGES: tuple[StageSpec, ...] = (
    StageSpec("data", "sam3m4.data.synth:generate", _synth, when=lambda cfg: cfg["synth_images"] > 0,
              outputs=lambda w: [f"{w.data}/saco_image", f"{w.data}/saco_video", f"{w.data}/manifest.json"],
              settings={"n_images": "synth_images", "n_videos": "synth_videos", "seed": "seed",
                        "image_size": "synth_image_size", "video_size": "synth_video_size",
                        "n_frames": "synth_frames"}),
    StageSpec("data-check", "sam3m4.eval.evaluate:evaluate",
              lambda w: ["eval", "--model", "gt", "--data", w.data, "--split", "val", "--run", w.run],
              inputs=lambda w: w.data_in + [f"{w.vdata}/saco_video"]),
    StageSpec("teacher-full", "sam3m4.teacher.full:write_random_teacher", name="teacher",
              command=lambda w: ["teacher", "full", "--out", w.teacher, "--seed", w.cfg["seed"]],
              when=lambda cfg: cfg["teacher_full"], outputs=lambda w: [w.teacher], settings={"seed": "seed"}),
    StageSpec("teacher-bootstrap", "sam3m4.teacher.bootstrap:bootstrap_teacher", name="teacher",
              command=lambda w: ["teacher", "bootstrap", "--config", w.cfg["teacher_bootstrap"], f"data_root={w.data}",
                                 f"out_dir={w.teacher}"],
              when=lambda cfg: not cfg["teacher_full"] and bool(cfg["teacher_bootstrap"]),
              inputs=lambda w: w.data_in + [w.cfg["teacher_bootstrap"]], outputs=lambda w: [w.teacher],
              config="teacher_bootstrap", loader="sam3m4.teacher.bootstrap:load_config"),
    StageSpec("phase", "sam3m4.distill.recipe:main", _distill, name="phase{phase}",
              each=lambda cfg: [{"phase": 1}, {"phase": 2}],
              inputs=lambda w: w.data_in + w.teacher_in + [w.cfg[f"phase{w.phase}_config"]]
              + ([w.phase1] if w.phase == 2 else []),
              outputs=lambda w: [w.phase1 if w.phase == 1 else w.phase2],
              config="phase{phase}_config", loader="sam3m4.distill.recipe:load_config"),
    StageSpec("video-teacher", "sam3m4.teacher.video:build_video_teacher",
              lambda w: ["teacher", "video", "--image-teacher", w.teacher, "--out", w.vteacher, "--data", w.vdata],
              when=lambda cfg: cfg["video_teacher_build"], inputs=lambda w: w.teacher_in + [f"{w.vdata}/saco_video"],
              outputs=lambda w: [w.vteacher]),
    StageSpec("video", "sam3m4.distill.video_run:distill_video", _video,
              inputs=lambda w: [w.phase2, f"{w.vdata}/saco_video"] + w.vteacher_in, outputs=lambda w: [w.video_ckpt],
              settings={"steps": "video_steps", "run": "run"}, solo=True),  # its tracker's FPS on this host
    StageSpec("quantize", "sam3m4.quantize.stage:quantize_compare",
              lambda w: ["quantize", "--mode", "compare", "--ckpt", w.video_ckpt, "--data", w.data, "--num-val",
                         w.cfg["quant_num_val"], "--qat", w.cfg["qat"], "--out", w.quantized, "--run", w.run,
                         *w.cfg["quantize_args"]],
              inputs=lambda w: [w.video_ckpt] + w.data_in, outputs=lambda w: [w.quantized],
              settings={"num_val": "quant_num_val", "qat": "qat", "run": "run"}, solo=True),  # each mode's latency
    # exactly what Stage 4 decided for each shipped backend (quantize/decision.json)
    StageSpec("export", "sam3m4.export.case:export_case", lambda w: _export(w, "chosen"), name="export-{backend}",
              each=lambda cfg: [{"backend": b} for b in cfg["ship"]], inputs=lambda w: [w.quantized, *w.data_in],
              outputs=lambda w: [f"{w.export_dir}/*_{w.backend}_*.pte"], allow_fail=True, group="export",
              settings={"num_val": "quant_num_val", "run": "run"}),
    # the config's extra cases, recorded as extras
    StageSpec("export-extra", "sam3m4.export.case:export_case", lambda w: _export(w, w.mode, "--shipped", "extra"),
              name="export-{backend}-{mode}",
              each=lambda cfg: [dict(zip(("backend", "mode"), case.split(":"))) for case in cfg["exports"]],
              inputs=lambda w: [f"{w.quantized}/{w.mode}", w.decision, *w.data_in],
              outputs=lambda w: [f"{w.export_dir}/*_{w.backend}_{w.mode}*.pte"], allow_fail=True, group="export",
              settings={"num_val": "quant_num_val", "run": "run"}),
    StageSpec("visual-qa", "sam3m4.visual.qa:build_visual_qa",
              lambda w: ["visual-eval", "--manifest", w.cfg["visual_manifest"], "--prompts", w.cfg["visual_prompts"],
                         "--teacher", w.teacher, "--student", w.phase2, "--run", w.run, "--threads", 1,
                         *(["--auto-checklist"] if w.cfg["visual_auto_checklist"] else [])],
              inputs=lambda w: w.teacher_in + [w.phase2, w.cfg["visual_manifest"], w.cfg["visual_prompts"]],
              outputs=lambda w: [f"{visual_dir(w.run)}/{VISUAL_INDEX}"], group="export"),
    StageSpec("acceptance", "pytest:console_main", _acceptance, program="pytest", allow_fail=True,
              inputs=lambda w: w.teacher_in + [w.phase2, w.video_ckpt, w.quantized, f"{w.export_dir}/*.pte",
                                               "acceptance", "conftest.py"],
              outputs=lambda w: [w.html]),
    # dry run, then --apply of exactly that; unchanged since the last prune: skipped
    StageSpec("prune", "sam3m4.storage.prune:make_plan", _prune,
              then=lambda w: [[*_prune(w), "--apply"]] if w.cfg["prune_apply"] else [],
              inputs=lambda w: [under(w.cfg, p) for p in PRUNE_ROOTS], solo=True),  # deletes what others read
    # before the report: it records the rehearsal's measurements, which the report shows
    StageSpec("plan", "sam3m4.pipeline.plan:write_plan", lambda w: ["plan", "--run", w.run, "--for", w.cfg["plan_for"]],
              when=lambda cfg: bool(cfg["plan_for"]), always=True),
    StageSpec("report", "sam3m4.report:render_report", lambda w: ["report", "--run", w.run], always=True),
)
"""The pipeline's stages in order: data -> teacher -> Phase 1/2 -> video -> quantize -> export -> visual QA ->
acceptance -> storage prune [-> the cost plan] -> report."""


def spec(key: str) -> StageSpec:
    """The row of :data:`STAGES` with this ``key``."""
    for row in STAGES:
        if row.key == key:
            return row
    raise KeyError(f"{key}: not a stage of the table; keys: {', '.join(r.key for r in STAGES)}")


def build_stages(cfg: dict) -> list[Stage]:
    """The ordered stages for ``cfg``, from :data:`STAGES` (the manifest is written by the runner before the prune)."""
    where = paths(cfg)
    return [stage for row in STAGES if row.when(cfg) for stage in row.stages(where)]
