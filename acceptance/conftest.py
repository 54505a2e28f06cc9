"""Acceptance fixtures: expensive inputs built once per session, cached on disk, guarded by a file lock."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from sam3m4.export.flows import FLOWS, Flow
from sam3m4.pipeline.stages import DEFAULTS as PIPELINE
from sam3m4.pipeline.stages import spec as stage_spec
from sam3m4.results import schema

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "data" / "test_cache"

# What each cached fixture is built from: the folder name carries a hash of these sources, so a checkout whose code
# changed builds a fresh set instead of gating yesterday's models (older sets of the same kind are removed). The
# stage builders below call the pipeline's stage functions (sam3m4/pipeline/stages.py: STAGES) with the demo's
# settings (its DEFAULTS) or small ones.
_DATA = ("sam3m4/data", "sam3m4/fileio.py", "sam3m4/paths.py")
_MODELS = (*_DATA, "sam3m4/models", "sam3m4/teacher", "sam3m4/distill", "sam3m4/losses", "sam3m4/metrics",
           "sam3m4/checkpoint.py", "sam3m4/config.py", "sam3m4/pipeline/stages.py", "configs/teacher_bootstrap.yaml",
           "configs/distill_phase1.yaml", "configs/distill_phase2.yaml")
SOURCES = {"synth-s7": _DATA, schema.STAGE3: _MODELS, schema.STAGE4: (*_MODELS, "sam3m4/quantize", "fixtures/synth")}


def cache_dir(kind: str) -> Path:
    """``data/test_cache/<kind>-<hash of SOURCES[kind]>``; other ``<kind>`` / ``<kind>-*`` folders are removed."""
    digest = hashlib.sha256()
    for name in SOURCES[kind]:
        top = ROOT / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    out = CACHE / f"{kind}-{digest.hexdigest()[:10]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{kind}.lock")):
        for old in [CACHE / kind, *CACHE.glob(f"{kind}-*")]:
            if old.is_dir() and old != out and not old.name.endswith(".lock"):
                shutil.rmtree(old, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def synth_data() -> Path:
    """A small synthetic SA-Co dataset (both formats) shared by all workers: data/test_cache/synth-s7-<hash>."""
    from sam3m4.data.synth import generate

    out = cache_dir("synth-s7")
    with FileLock(str(out) + ".lock"):
        if not (out / "manifest.json").is_file():
            generate(out, n_images=40, n_videos=4, seed=7, image_size=128, n_frames=16, progress=False)
    return out


# --- Stage 3: a teacher and a Phase 2 student ------------------------------------------------------------
@dataclass(frozen=True)
class Stage3Models:
    data_root: Path
    teacher: str
    student_ckpt: Path
    embedded: bool
    """True when the teacher is the bootstrapped tiny SAM 3 (its own quality targets then apply)."""


def _build_embedded_stage3(out: Path) -> Stage3Models:
    """The pipeline's stages data -> teacher bootstrap -> Phase 1 -> Phase 2 with the demo's settings and configs,
    under ``out`` (cached)."""
    from sam3m4.checkpoint import best_name, list_checkpoints

    data, teacher, ckpts = out / "synth", out / "teacher", out / "checkpoints"
    synth, boot, distill = stage_spec("data"), stage_spec("teacher-bootstrap"), stage_spec("phase")
    if not (data / "manifest.json").is_file():
        synth.load()(data, **synth.kwargs(PIPELINE), progress=False)
    if not (teacher / "config.json").is_file():
        cfg = boot.read_settings(ROOT / boot.config_file(PIPELINE),
                                 [f"data_root={data}", f"out_dir={teacher}", "progress=false"])
        boot.load()(cfg.pop("data_root"), cfg.pop("out_dir"), **cfg)
    best = ckpts / best_name(2)
    if not best.is_file():
        common = [f"data_root={data}", f"teacher={teacher}", f"checkpoint_dir={ckpts}", f"log_dir={out / 'logs'}",
                  "results_run=", "vis_pairs=0"]
        for phase in (1, 2):
            distill.load()(distill.read_settings(ROOT / distill.config_file(PIPELINE, phase=phase), common))
    if not best.is_file():
        best = list_checkpoints(ckpts, 2)[-1]
    return Stage3Models(data_root=data, teacher=str(teacher), student_ckpt=best, embedded=True)


@pytest.fixture(scope="session")
def stage3_models(pytestconfig) -> Stage3Models:
    """The models Stage 3 gates: given on the command line, or the embedded default built once (file lock)."""
    opt = pytestconfig.getoption
    if opt("--stage3-teacher") or opt("--stage3-student"):
        if not (opt("--stage3-teacher") and opt("--stage3-student")):
            pytest.fail("--stage3-teacher and --stage3-student go together")
        data = Path(opt("--stage3-data") or ROOT / "data" / "synth")
        teacher = opt("--stage3-teacher")
        embedded = (Path(teacher) / "bootstrap_metrics.json").is_file()  # written by `sam3m4 teacher bootstrap`
        return Stage3Models(data_root=data, teacher=teacher, student_ckpt=Path(opt("--stage3-student")),
                            embedded=embedded)
    out = cache_dir(schema.STAGE3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with FileLock(str(out) + ".lock"):
        return _build_embedded_stage3(out)


# --- Stage 4: quantized students ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage4Models:
    dir: Path
    """One ``<mode>/`` folder per mode (``sam3m4 quantize`` output)."""
    val: object
    """The val pairs (:class:`sam3m4.data.SacoImageDataset`)."""


SMALL_STAGE4_QUANTIZE = {"num_val": 8, "qat": "always", "qat_steps": 4, "runs": 1, "progress": False, "echo": None}
"""The pipeline's quantize settings (:data:`sam3m4.pipeline.stages.DEFAULTS`) the small set replaces: every mode, QAT
included (4 steps), scored on 8 pairs with one timed run (the acceptance gates score them again)."""


def _build_small_stage4(out: Path) -> Path:
    """A tiny student fitted to the fixture data's 43 train pairs from their ground truth alone (the pipeline's
    Phase 2 function, 60 steps, ~20 s; the random tiny teacher only satisfies the recipe's cache), then the
    pipeline's quantize stage (``quantize --mode compare``) with :data:`SMALL_STAGE4_QUANTIZE` under ``out``
    (its own records in ``out/records``). It is scored on the pairs it was fitted to: enough to show the modes and
    the gate at work (a student that segments nothing would make every drop 0), not a quality claim."""
    from sam3m4.checkpoint import list_checkpoints
    from sam3m4.distill import cache as feature_cache
    from sam3m4.quantize.decision import DECISION_FILE
    from sam3m4.results import ResultsStore

    ckpts, synth = out / "checkpoints", ROOT / "fixtures" / "synth"
    distill, quantize = stage_spec("phase"), stage_spec("quantize")
    if not list_checkpoints(ckpts, 2):
        teacher = feature_cache.save_random_teacher(out / "teacher", image_size=56, hidden_size=32, vit_layers=2,
                                                    vit_window=4, num_queries=8)
        gt_only = [f"w_{k}=0" for k in ("presence", "semantic", "semantic_dice", "score", "cls", "aux", "mask_bce",
                                        "mask_dice", "box_l1", "box_giou")]
        distill.load()(distill.read_settings(ROOT / distill.config_file(PIPELINE, phase=2), [
            f"data_root={synth}", f"teacher={teacher}", f"cache_dir={out / 'cache'}",
            f"checkpoint_dir={ckpts}", f"log_dir={out / 'logs'}", "init_from=", "epochs=12", "epoch_items=0",
            "batch_size=8", "lr=3e-3", "warmup_steps=3", "w_gt=1.0", "w_gt_score=2.0", *gt_only, "eval_every=0",
            "vis_pairs=0", "progress=false", "results_run=", "threads=1", "cache_topk=4"]))
    ckpt = list_checkpoints(ckpts, 2)[-1]
    if not (out / "quantized" / DECISION_FILE).is_file():  # written last: the set is complete
        quantize.load()(ckpt, **{**quantize.kwargs(PIPELINE), **SMALL_STAGE4_QUANTIZE}, out_dir=out / "quantized",
                        data=synth, store=ResultsStore("small-stage4", root=out / "records"))
    return out / "quantized"


@pytest.fixture(scope="session")
def stage4_models(pytestconfig) -> Stage4Models:
    """The quantized models Stage 4 gates: ``--stage4-dir`` or a small set built once (file lock)."""
    import json

    from sam3m4.data import SacoImageDataset

    given = pytestconfig.getoption("--stage4-dir")
    if not given:
        out = cache_dir(schema.STAGE4)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        with FileLock(str(out) + ".lock"):
            qdir = _build_small_stage4(out)
        return Stage4Models(dir=qdir, val=SacoImageDataset(ROOT / "fixtures" / "synth" / "saco_image" / "train.json"))
    qdir = Path(given)
    if not (qdir / "fp16" / "quantized.json").is_file():
        pytest.fail(f"{qdir}/fp16: missing; run `sam3m4 quantize --mode compare --out {qdir}` first")
    from sam3m4.quantize.pipeline import load_val

    source = json.loads((qdir / "fp16" / "quantized.json").read_text())["source"]
    data = pytestconfig.getoption("--stage4-data")
    val, _, _ = load_val(source, Path(data) if data else None)
    return Stage4Models(dir=qdir, val=val)


# --- Stage 5: exported programs ----------------------------------------------------------------------------
DEFAULT_STAGE5_CASES = "coreml:int4,qnn:int8_int4,xnnpack:int8_int4"


@dataclass(frozen=True)
class Stage5Case:
    """One Stage 5 case: a flow (:class:`sam3m4.export.flows.Flow`) and one of its quant modes."""

    flow: Flow
    mode: str
    shipped: str | None = None
    """``decision`` (Stage 4 chose it for the backend: ``--stage5-decision``), ``extra`` (``--stage5-cases``
    beside a decision) or None (no decision given)."""

    @property
    def backend(self) -> str:
        return self.flow.name

    @property
    def id(self) -> str:
        return f"{self.flow.name}-{self.mode}"

    @property
    def subject(self) -> str:
        """``<backend>/<mode>``: the records ``sam3m4 export`` writes on this host."""
        return schema.export_subject(self.flow.name, self.mode)

    @property
    def device_subject(self) -> str:
        """``<platform>/<backend>/<mode>``: the records ``sam3m4 device import`` writes from the flow's phone."""
        return schema.device_subject(self.flow.platform, self.flow.name, self.mode)


def stage5_matrix() -> dict[str, Stage5Case]:
    """Every flow x every quant mode it maps, by ``backend:mode`` (unsupported ones too: they are reported)."""
    return {f"{flow.name}:{mode}": Stage5Case(flow, mode) for flow in FLOWS.values() for mode in flow.modes}


def stage5_cases(config) -> list[Stage5Case]:
    """The cases gated: Stage 4's per-backend decisions (``--stage5-decision``) then the ``--stage5-cases`` extras;
    without a decision, ``--stage5-cases`` (default :data:`DEFAULT_STAGE5_CASES`)."""
    from sam3m4.errors import Sam3m4Error
    from sam3m4.quantize.decision import read_decision

    matrix, given, decision = stage5_matrix(), config.getoption("--stage5-cases"), config.getoption("--stage5-decision")
    decided = []
    if decision:
        try:
            decided = [f"{b}:{m}" for b, m in read_decision(decision).cases()]
        except Sam3m4Error as err:
            raise pytest.UsageError(f"--stage5-decision: {err}") from None
    listed = given if given is not None else ("" if decision else DEFAULT_STAGE5_CASES)
    wanted = [c.strip() for c in listed.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in matrix]
    if unknown:
        raise pytest.UsageError(f"--stage5-cases: {', '.join(unknown)}: not a backend:mode of the flows "
                                f"(choices: {', '.join(matrix)})")
    extra = schema.SHIPPED_EXTRA if decision else None
    return ([Stage5Case(matrix[c].flow, matrix[c].mode, schema.SHIPPED_DECISION) for c in decided]
            + [Stage5Case(matrix[c].flow, matrix[c].mode, extra) for c in wanted if c not in decided])


def pytest_generate_tests(metafunc):
    """``case``: :func:`stage5_cases` in order, each marked with its flow's marker (``coreml``, ``qnn``,
    ``xnnpack``)."""
    if "case" in metafunc.fixturenames:
        cases = stage5_cases(metafunc.config)
        metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=getattr(pytest.mark, c.backend)) for c in cases])


def small_stage4() -> Path:
    """The Stage 4 small set's ``quantize`` folder (built once, file lock)."""
    stage4 = cache_dir(schema.STAGE4)
    with FileLock(str(stage4) + ".lock"):
        return _build_small_stage4(stage4)


def small_stage4_pairs(num_val: int):
    """What the Stage 4 small set is scored on (its fixture's pairs) and the fixture's val videos, as
    :class:`sam3m4.export.accuracy.ValPairs`."""
    from sam3m4.data import SacoImageDataset, SacoVideoDataset
    from sam3m4.export.accuracy import ValPairs

    synth = ROOT / "fixtures" / "synth"
    return ValPairs(SacoImageDataset(synth / "saco_image" / "train.json"), num_val,
                    SacoVideoDataset(synth / "saco_video" / "val.json"))


@pytest.fixture(scope="session")
def small_stage4_set(pytestconfig):
    """``(quantize folder, ValPairs)`` of the Stage 4 small set: :func:`small_stage4`, :func:`small_stage4_pairs`
    (a fixture, because a test module importing ``conftest`` would get whichever conftest was imported first)."""
    return small_stage4(), small_stage4_pairs(pytestconfig.getoption("--stage4-num-val"))


@pytest.fixture(scope="session")
def stage5_export(pytestconfig, results_store):
    """``export(backend, mode, shipped=None)`` -> the run's stage5 records for that case, exporting it first (once,
    file lock) when the run has none: from ``--stage5-quantized`` or the Stage 4 small set
    (``data/test_cache/stage4``). A case that runs here is scored on Stage 4's val pairs (``--stage4-num-val`` of
    ``--stage4-data``, or the small set's pairs). The export is the pipeline's export stage function."""
    export_case = stage_spec("export").load()

    def export(backend: str, mode: str, shipped: str | None = None) -> dict:
        subject = schema.export_subject(backend, mode)
        CACHE.mkdir(parents=True, exist_ok=True)  # the lock lives with the other test-cache locks, not in reports/
        with FileLock(str(CACHE / f"{schema.STAGE5}-{results_store.run}-{backend}-{mode}.lock")):
            if results_store.latest(stage=schema.STAGE5, subject=subject, metric=schema.EXPORT_OK) is None:
                given = pytestconfig.getoption("--stage5-quantized")
                num_val, data = pytestconfig.getoption("--stage4-num-val"), pytestconfig.getoption("--stage4-data")
                qdir = Path(given) if given else small_stage4()
                out = CACHE / schema.STAGE5 if not given else ROOT / "outputs" / "export"
                if shipped == schema.SHIPPED_DECISION and not (given and (qdir / "decision.json").is_file()):
                    shipped = None  # no Stage 4 decision of the run (the small set's own is not it): nothing to bind
                export_case(backend, mode, quantized=qdir, out_dir=out, runs=50, store=results_store, shipped=shipped,
                            num_val=num_val, data=data if given else None,
                            pairs=None if given else small_stage4_pairs(num_val))
        return {r.metric: r for r in results_store.records() if r.stage == schema.STAGE5 and r.subject == subject}

    return export
