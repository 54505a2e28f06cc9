"""Planted measurements: one per target of the targets file, each run through the very gate test that uses it.

``PLANTED`` maps a target's name to a :class:`Plant`. ``test_planted.py`` is generated from the targets file:
for every target it plants a measurement just beyond the threshold (the gate test must fail, its record saying
``passed: False``) and one just inside (it must pass), and, where the gate measures a model or a file, the planted
model or file (:attr:`Plant.model`). A target with no entry here fails the suite.

Adding a target's planted case is a few lines (docs/gates.md): a function ``run(bench, value)`` that builds the
gate test's inputs so that it measures ``value`` and calls the test function itself:

    def _my_gate(bench, value):
        recs = bench.records(case.subject, {schema.MY_METRIC: value})          # planted records
        test_stage5.test_my_gate(case, lambda *_: recs, bench.gate, bench.release)

    PLANTED["my_target"] = Plant("test_stage5.test_my_gate", _my_gate)

The gate tests' fixtures are plain arguments here: :class:`Bench` hands out a ``gate`` writing to a store of its
own (the same binding and judging as the session's ``gate`` fixture), planted records, and session fixtures
(``bench.fixture("stage4_models")``) for the plants that need a real model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import test_stage3
import test_stage3_video
import test_stage4
import test_stage5

from sam3m4.export.flows import FLOWS
from sam3m4.results import ResultsStore, schema
from sam3m4.results.targets import Target

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DATA = ROOT / "fixtures" / "synth"
GATE_FAILED = (AssertionError, pytest.fail.Exception)
"""How a gate test fails: its ``assert rec.passed`` or a ``pytest.fail`` (:func:`outcomes.settle`)."""


@dataclass(frozen=True)
class Plant:
    """How one target is proven to bite."""

    gate_test: str
    """The gate test it runs (``module.function``), or the function that judges a benchmark."""
    run: Callable[["Bench", float], None]
    """``run(bench, value)``: plant inputs that make the gate measure ``value`` and run the gate test on them
    (raises as the gate test does when the gate fails)."""
    model: Callable[["Bench"], str] | None = None
    """``model(bench)``: plant a model or file the gate must fail (a teacher scoring 0, an oversized ``.pte``, a
    wrong-numerics program, a device file over budget); asserts that it does and returns what it planted."""
    plants: str = "a value"
    """What the boundary cases plant: ``a value`` (records or scores), or the file they write."""
    marks: tuple = ()
    """pytest marks of the planted tests (``slow`` when they need a session-built model)."""


@dataclass
class Bench:
    """Where a planted case runs: its own results store and ``gate``, planted records, session fixtures."""

    request: pytest.FixtureRequest
    tmp_path: Path
    targets: dict[str, Target]
    make_gate: Callable
    targets_path: Path
    release: bool = False
    store: ResultsStore = field(init=False)

    def __post_init__(self):
        self.store = ResultsStore("planted", root=self.tmp_path / "reports")

    @property
    def gate(self):
        """The ``gate`` fixture's callable over this bench's store and the session's targets."""
        return self.make_gate(self.store, self.targets)

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def records(self, subject: str, values: dict, stage: str = schema.STAGE5, **fields) -> dict:
        """Planted records ``{metric: Record}`` (written to this bench's store), like ``stage5_export`` returns."""
        return {m: self.store.record(stage=stage, subject=subject, metric=m, value=v, provenance="planted",
                                     unit=_unit(m), **fields.get(m, {})) for m, v in values.items()}

    def judged(self) -> list:
        """The records of this bench's store that carry a verdict target (what the gates judged)."""
        return [r for r in self.store.records() if r.target is not None]

    def verdict(self, metric: str, value, passed) -> None:
        """Record a benchmark's verdict (the ``bench_*`` targets are judged outside pytest, by
        :func:`sam3m4.export.bench.judge`) so the harness reads it like a gate's."""
        self.store.record(stage=schema.BENCH, subject="planted", metric=metric, value=value, target=0.0,
                          comparison="==", passed=passed)


def _unit(metric: str) -> str:
    m = schema.METRICS.get(metric.split("/")[0])
    return m.unit if m is not None else ""


def just_beyond(t: Target) -> float:
    """The nearest measurement that fails ``t``: the threshold itself for a strict comparison, else 0.1% past it."""
    eps = 1e-3 * max(abs(t.value), 1.0)
    return {"<": t.value, ">": t.value, "<=": t.value + eps, ">=": t.value - eps}[t.comparison]


def just_inside(t: Target) -> float:
    """A measurement 0.1% inside ``t``'s threshold."""
    eps = 1e-3 * max(abs(t.value), 1.0)
    return t.value - eps if t.comparison in ("<", "<=") else t.value + eps


def fails(fn, *args, **kwargs) -> str:
    """Run a gate test that must fail; return its message (pytest.fail if it passed or skipped)."""
    try:
        fn(*args, **kwargs)
    except GATE_FAILED as err:
        return str(err)
    except pytest.skip.Exception as err:
        pytest.fail(f"{fn.__name__}: skipped where it must fail: {err}")
    pytest.fail(f"{fn.__name__}: passed a planted failure")


# --- Stage 3 ---------------------------------------------------------------------------------------------------
def _result(miou: float, f1: float, n: int = 40):
    """An image result as ``evaluate_pairs`` returns it (the fields the gates read)."""
    return SimpleNamespace(miou=miou, presence=SimpleNamespace(f1=f1), num_pairs=n)


def _scores(teacher, student) -> dict:
    return {"teacher": (teacher, "planted teacher", None, None, {}),
            "student": (student, "planted student", None, None, {})}


def _ratio_gate(metric: str, target: str):
    def run(bench, value):
        teacher = 0.8  # the student is value x teacher
        t, s = (_result(teacher, 1.0), _result(value * teacher, 1.0)) if metric == schema.MIOU else \
            (_result(1.0, teacher), _result(1.0, value * teacher))
        test_stage3.test_student_keeps_teacher_quality(_scores(t, s), bench.gate, bench.release, metric, target)
    return run


def _positive_pairs():
    from sam3m4.data import SacoImageDataset

    val = SacoImageDataset(FIXTURE_DATA / "saco_image" / "val.json")
    return [val[i] for i in range(len(val)) if val[i].present]


def _nothing(sample):
    """A planted teacher that finds nothing: no mask, no score."""
    return np.zeros((0, *sample.masks.shape[-2:]), dtype=bool), np.zeros(0)


def _zero_teacher_scores():
    """A teacher that finds nothing and a ground-truth student, scored by ``evaluate_pairs`` on the positive pairs
    of the fixture data: the teacher scores mIoU 0 and Presence F1 0."""
    from sam3m4.eval.image import evaluate_pairs, ground_truth_predictor

    pairs = _positive_pairs()
    teacher = evaluate_pairs(pairs, _nothing, progress=False)
    student = evaluate_pairs(pairs, ground_truth_predictor, progress=False)
    assert teacher.miou == 0.0 and teacher.presence.f1 == 0.0 and student.miou == 1.0
    return _scores(teacher, student)


def _zero_teacher_ratio(metric: str, target: str):
    def model(bench):
        scores = _zero_teacher_scores()
        msg = fails(test_stage3.test_student_keeps_teacher_quality, scores, bench.gate, True, metric, target)
        assert "not measurable" in msg and f"teacher {metric} 0" in msg, msg
        with pytest.raises(pytest.skip.Exception, match="not measurable"):  # without --release: skipped, not passed
            test_stage3.test_student_keeps_teacher_quality(scores, bench.gate, False, metric, target)
        return "a teacher that finds nothing (mIoU 0, Presence F1 0 on the fixture data's positive pairs)"
    return model


def _embedded_teacher(metric: str, target: str):
    def run(bench, value):
        res = _result(value, 0.95) if metric == schema.MIOU else _result(0.8, value)
        test_stage3.test_embedded_teacher_is_useful(SimpleNamespace(embedded=True), _scores(res, res), bench.gate,
                                                    metric, target)

    def model(bench):
        scores = _zero_teacher_scores()
        fails(test_stage3.test_embedded_teacher_is_useful, SimpleNamespace(embedded=True), scores, bench.gate,
              metric, target)
        return "a teacher that finds nothing, scored on the fixture data"
    return run, model


def _official(teacher: float, student: float) -> dict:
    values = lambda v: {schema.SACO_CGF1: v}  # noqa: E731
    return {"teacher": (values(teacher), "planted", None), "student": (values(student), "planted", None)}


def _cgf1_ratio(bench, value):
    test_stage3.test_student_keeps_teacher_cgf1(_official(0.5, 0.5 * value), bench.gate, bench.release)


def _cgf1_zero_teacher(bench):
    msg = fails(test_stage3.test_student_keeps_teacher_cgf1, _official(0.0, 0.4), bench.gate, True)
    assert "teacher cgF1 0 <= 0" in msg, msg
    return "official values with teacher cgF1 0"


def _video_records(bench, teacher_jf: float, student_jf: float, phase2_miou: float = 0.5,
                   video_miou: float = 0.5) -> None:
    for subject, metric, value in ((schema.TEACHER, schema.JF, teacher_jf), (schema.STUDENT_VIDEO, schema.JF, student_jf),
                                   (schema.STUDENT_PHASE2, schema.MIOU, phase2_miou),
                                   (schema.STUDENT_VIDEO, schema.MIOU, video_miou)):
        bench.store.record(stage=schema.STAGE3, subject=subject, metric=metric, value=value, unit=schema.FRACTION,
                           provenance="planted")


def _jf_ratio(bench, value):
    _video_records(bench, 0.8, 0.8 * value)
    test_stage3_video.test_student_video_jf_keeps_teacher_quality(bench.store, bench.gate, bench.release)


def _jf_zero_teacher(bench):
    _video_records(bench, 0.0, 0.6)
    msg = fails(test_stage3_video.test_student_video_jf_keeps_teacher_quality, bench.store, bench.gate, True)
    assert "teacher J&F 0 <= 0" in msg, msg
    return "a teacher J&F record of 0"


def _miou_cost(bench, value):
    _video_records(bench, 0.8, 0.8, phase2_miou=0.6, video_miou=0.6 - value / 100)
    test_stage3_video.test_video_distillation_keeps_image_quality(bench.store, bench.gate)


# --- Stage 4 ---------------------------------------------------------------------------------------------------
def _quant_drop(bench, value):
    """The Stage 4 small set's fp16 model, gated as a mode against a planted fp16 baseline ``value`` points above
    its own mIoU (the gate test scores the model itself)."""
    models, config = bench.fixture("stage4_models"), bench.request.config
    model, _ = test_stage4.load_quantized(models.dir / "fp16")
    measured = test_stage4._score(model, models, config).miou
    t = bench.targets["quant_miou_drop"]
    base = measured + value / 100 if t.basis == "absolute" else measured / (1 - value / 100)
    scored = lambda mode: (test_stage4._score(model, models, config),)  # noqa: E731  (the module fixture's shape)
    test_stage4.test_quantized_mode_keeps_fp16_miou("fp16", models, _result(base, 1.0), scored, bench.gate,
                                                    bench.targets)


def _quant_one_bit(bench):
    """The fp16 model with every weight rounded to 1 bit, saved as a mode folder and gated like a shipped mode."""
    from sam3m4.quantize.storage import save_quantized

    models, config = bench.fixture("stage4_models"), bench.request.config
    model, meta = test_stage4.load_quantized(models.dir / "fp16")
    base = test_stage4._score(model, models, config)
    planted = bench.tmp_path / "quantized"
    save_quantized(test_stage4._round_to_one_bit(model), planted / "fp16", mode="fp16", preset=meta["preset"],
                   source=meta.get("source"))
    one_bit, _ = test_stage4.load_quantized(planted / "fp16")  # what the gate reads: the saved mode folder
    scored = lambda mode: (test_stage4._score(one_bit, models, config),)  # noqa: E731
    fails(test_stage4.test_quantized_mode_keeps_fp16_miou, "fp16", SimpleNamespace(dir=planted, val=models.val), base,
          scored, bench.gate, bench.targets)
    return f"the Stage 4 small set's student with weights rounded to 1 bit ({planted / 'fp16'})"


def _presence_result(scores, present):
    """A scored mode as Stage 4's ``scored`` fixture returns it: ``(ImageEvalResult, size MB, predictions)``."""
    scores, present = np.asarray(scores, dtype=np.float64), np.asarray(present, dtype=bool)
    res = SimpleNamespace(miou=0.5, presence=SimpleNamespace(f1=1.0), num_pairs=len(scores), presence_scores=scores,
                          present=present, pair_ids=tuple(range(len(scores))))
    return res, 1.0, None


def _plateau(bench, value):
    """Presence scores whose Presence F1 at the shipped threshold ``t`` is exactly ``value`` below the best: every
    pair shows the concept; ``P - k`` score above ``t``, ``k`` score below it (found by any threshold under
    theirs). F1 at ``t`` = 2(P-k) / (2P-k), best F1 = 1, so the gap is k / (2P-k): the fraction nearest ``value``
    with an even 2P-k+k."""
    from fractions import Fraction

    from sam3m4.eval.calibration import shipped_threshold

    t = bench.targets["presence_threshold_on_plateau"]
    thr = shipped_threshold(t)
    gap = Fraction(value).limit_denominator(20_000)
    k, d = gap.numerator, gap.denominator
    if (d + k) % 2:
        k, d = 2 * k, 2 * d
    pairs = (d + k) // 2
    scores = [thr + (1 - thr) / 2] * (pairs - k) + [thr / 2] * k
    scored = lambda mode: _presence_result(scores, [True] * pairs)  # noqa: E731
    point = SimpleNamespace(threshold=thr, how="fixed")  # judged on every planted pair
    test_stage4.test_shipped_threshold_on_plateau(("planted", "planted scores"), scored,
                                                  lambda mode: (point, "planted threshold"), None, bench.gate,
                                                  bench.store, bench.targets)


def _ece_rise(bench, value):
    """fp16 perfectly calibrated (every pair present, scored 1.0: ECE 0) and a shipped mode scoring every pair
    ``1 - value`` (ECE exactly ``value``): every bootstrap resample gives the same rise, so it is resolvable."""
    n = 200
    fp16 = _presence_result([1.0] * n, [True] * n)
    shipped = _presence_result([1.0 - value] * n, [True] * n)
    test_stage4.test_shipped_ece_rise(("planted", "planted scores"), lambda mode: shipped, fp16[0], bench.gate,
                                      bench.store, bench.targets)


# --- Stage 5 ---------------------------------------------------------------------------------------------------
def _case(backend: str, mode: str):
    """The Stage 5 case ``backend:mode`` (what ``acceptance/conftest.py`` parametrizes ``case`` with)."""
    return SimpleNamespace(flow=FLOWS[backend], mode=mode, backend=backend, subject=schema.export_subject(backend, mode),
                           device_subject=schema.device_subject(FLOWS[backend].platform, backend, mode),
                           shipped=schema.SHIPPED_DECISION)


XNNPACK, COREML, QNN = _case("xnnpack", "int8_int4"), _case("coreml", "int4"), _case("qnn", "int8_int4")
XNN_PASSING = {f"{schema.MASK_IOU}/forward": 1.0, schema.max_abs_error("encode_text"): 0.0,
               schema.max_abs_error("forward"): 0.0, schema.HOST_IMAGE_LATENCY_MS: 1.0}


def _export(recs: dict):
    """A planted ``stage5_export``: the export succeeded and these are its records."""
    return lambda backend, mode, shipped=None: recs


def _pte(bench, case, mb: float) -> dict:
    """A ``.pte`` file of ``mb`` MB (sparse: no disk used) and the export's records describing it."""
    path = bench.tmp_path / f"planted_{case.backend}_{case.mode}.pte"
    with open(path, "wb") as handle:
        handle.truncate(round(mb * 1e6))
    recs = bench.records(case.subject, {schema.EXPORT_OK: True})
    recs[schema.PTE_MB] = bench.store.record(stage=schema.STAGE5, subject=case.subject, metric=schema.PTE_MB,
                                             value=path.stat().st_size / 1e6, unit=schema.MB, artifact=path,
                                             provenance="planted file")
    return recs


def _pte_size(bench, value):
    test_stage5.test_pte_size(XNNPACK, _export(_pte(bench, XNNPACK, value)), bench.gate, bench.release)


def _pte_grown(bench):
    """A ``.pte`` whose record says 10 MB but whose file is 60 MB: the gate judges the file."""
    recs = _pte(bench, XNNPACK, 10.0)
    path = Path(recs[schema.PTE_MB].artifact)
    with open(path, "r+b") as handle:
        handle.truncate(60_000_000)
    recs[schema.PTE_MB] = bench.store.record(stage=schema.STAGE5, subject=XNNPACK.subject, metric=schema.PTE_MB,
                                             value=10.0, unit=schema.MB, artifact=path, provenance="planted")
    msg = fails(test_stage5.test_pte_size, XNNPACK, _export(recs), bench.gate, bench.release)
    assert "60.00 MB" in msg, msg
    return "a 60 MB .pte (sparse file) whose record claims 10 MB"


def _npu(bench, value):
    recs = bench.records(COREML.subject, {schema.EXPORT_OK: True, schema.NPU_PERCENT: value})
    test_stage5.test_npu_coverage(COREML, _export(recs), bench.gate, bench.release, [])


def _xnn(bench, planted: dict):
    recs = bench.records(XNNPACK.subject, {schema.EXPORT_OK: True, **XNN_PASSING, **planted})
    test_stage5.test_cpu_numerics_and_host_latency(XNNPACK, _export(recs), bench.gate, bench.release)


def _int8_share(bench, value):
    recs = bench.records(XNNPACK.subject, {schema.EXPORT_OK: True, schema.XNNPACK_INT8_MAC_SHARE: value})
    test_stage5.test_xnnpack_int8_mac_share(XNNPACK, _export(recs), bench.gate, bench.release)


def _float_program(bench) -> str:
    """A tiny student exported to XNNPACK with every layer float (the fp16 mode's program) recorded as the
    integer case's ``.pte``: its image path has no int8 MAC, and the gate must fail it."""
    import torch

    from sam3m4.export.export import export_pte, records
    from sam3m4.models.build import build_student

    torch.manual_seed(0)
    student = build_student("tiny").eval().requires_grad_(False)
    result = export_pte(student, backend="xnnpack", mode="fp16", out_dir=bench.tmp_path, model_name="planted_float",
                        methods=["forward"])
    assert result.ok, result.error
    share = next(kw for kw in records(result) if kw["metric"] == schema.XNNPACK_INT8_MAC_SHARE)
    recs = bench.records(XNNPACK.subject, {schema.EXPORT_OK: True})
    recs[schema.XNNPACK_INT8_MAC_SHARE] = bench.store.record(**dict(share, subject=XNNPACK.subject))
    msg = fails(test_stage5.test_xnnpack_int8_mac_share, XNNPACK, _export(recs), bench.gate, bench.release)
    assert "0.0% of the image path" in msg, msg
    return f"{result.path.name}: the tiny student lowered to XNNPACK with every layer float, as {XNNPACK.subject}"


def _deployed(metric: str, target: str):
    """The exported ``.pte``'s deployed score planted as its record (the gate test reads the record ``sam3m4
    export`` writes); the planted broken layer itself is ``test_stage5.test_deployed_gate_fails_a_planted_broken_layer``."""
    def run(bench, value):
        recs = bench.records(XNNPACK.subject, {schema.EXPORT_OK: True, metric: value})
        test_stage5.test_deployed_accuracy(XNNPACK, metric, target, _export(recs), bench.gate, bench.release)
    return run


def _bundle(bench, value):
    """The bundled ``.pte`` run on this host (XNNPACK) agreeing with its bundled reference at mask IoU ``value``
    (the planted wrong reference itself: ``tests/export/test_bundle.py``)."""
    recs = bench.records(XNNPACK.subject, {schema.EXPORT_OK: True, schema.BUNDLE_MASK_IOU: value})
    test_stage5.test_bundle_verification(XNNPACK, _export(recs), bench.store, bench.gate, bench.release)


def _undelegated_program(bench):
    """A slowed program: the Stage 4 small set's fp16 student with no XNNPACK delegate, every op on ExecuTorch's
    portable kernels (what a partitioner that silently delegates nothing ships), timed on this host the way
    ``sam3m4 export`` times the image path. Portable kernels run an order of magnitude slower than XNNPACK's."""
    import torch
    from executorch.exir import to_edge_transform_and_lower

    from sam3m4.export.case import load_case_model
    from sam3m4.export.export import method_inputs, method_module
    from sam3m4.export.runtime import benchmark_pte

    student, _, _ = load_case_model("fp16", bench.fixture("stage4_models").dir, None)
    inputs = method_inputs(student, "forward")
    with torch.no_grad():
        program = torch.export.export(method_module(student, "forward").eval(), inputs)
    pte = bench.tmp_path / "planted_undelegated.pte"
    pte.write_bytes(to_edge_transform_and_lower(program).to_executorch().buffer)
    ms = benchmark_pte(pte, "forward", student, warmup=1, runs=3)["p50_ms"]
    msg = fails(_xnn, bench, {schema.HOST_IMAGE_LATENCY_MS: ms})
    assert "budget exceeded" in msg, msg
    return f"{pte.name}: the student's image path with no XNNPACK delegate (portable kernels), host p50 {ms:.0f} ms"


def _wrong_program(bench) -> tuple[dict, Path]:
    """The Stage 5 XNNPACK ``.pte`` (the session's export of the Stage 4 small set) checked against an eager model
    whose float parameters (norms, biases) are shifted by 0.5: the program now disagrees with its model, and the
    numerics gates must say so. Returns the records ``measure_on_host`` wrote, and the ``.pte``."""
    import torch

    from sam3m4.export.case import load_case_model, measure_on_host

    real = bench.fixture("stage5_export")(XNNPACK.backend, XNNPACK.mode)
    pte = Path(real[schema.PTE_MB].artifact)
    student, tracker, _ = load_case_model(XNNPACK.mode, bench.fixture("stage4_models").dir, None)
    with torch.no_grad():
        for p in student.parameters():
            if type(p) is torch.nn.Parameter and p.is_floating_point():
                p.add_(0.5)
    result = SimpleNamespace(path=pte, backend=XNNPACK.backend)
    assert measure_on_host(result, student, tracker, bench.store.record, XNNPACK.subject, runs=1, echo=lambda _: None)
    recs = {r.metric: r for r in bench.store.records() if r.subject == XNNPACK.subject}
    return {**recs, schema.EXPORT_OK: real[schema.EXPORT_OK]}, pte


def _wrong_numerics(method: str | None):
    """The wrong program fails the mask IoU gate (``method`` None), or the max |error| gate of ``method`` with the
    gates before it planted as passing."""
    def model(bench):
        recs, pte = _wrong_program(bench)
        if method is not None:
            before = [f"{schema.MASK_IOU}/forward"] + [schema.max_abs_error(m) for m in
                                                      schema.PTE_METHODS[:schema.PTE_METHODS.index(method)]]
            recs.update(bench.records(XNNPACK.subject, {m: XNN_PASSING[m] for m in before}))
        msg = fails(test_stage5.test_cpu_numerics_and_host_latency, XNNPACK, _export(recs), bench.gate, bench.release)
        # a program this wrong may return NaN where eager does not: a failure at the metric stage says so
        assert ("mask IoU" if method is None else f"{method} max |error|") in msg or "not a finite number" in msg, msg
        return f"{pte.name} checked against eager weights shifted by 0.5 (a wrong-numerics program)"
    return model


def _device_file(bench, *, image_ms: float | None = None, track_ms: float | None = None) -> Path:
    """An Android benchmark app results file (the fixture's format) with one image and/or one tracker step
    latency, and the ``.pte`` files it names."""
    rows = []
    for model, ms in (("planted_qnn", image_ms), ("planted_track_qnn", track_ms)):
        if ms is None:
            continue
        (bench.tmp_path / "pte").mkdir(exist_ok=True)
        (bench.tmp_path / "pte" / f"{model}_int8_int4.pte").write_bytes(b"PTE0" + model.encode())
        rows.append({"benchmarkModel": {"name": model, "backend": "int8", "quantization": "int4"},
                     "metric": "trimmean_inference_latency(ms)", "actualValue": ms, "targetValue": 0.0,
                     "deviceInfo": {"device": "samsung", "arch": "SM-S928B", "os": "Android 14",
                                    "totalMem": 11621036032, "availMem": 4928593920}})
    path = bench.tmp_path / "benchmark_results.json"
    path.write_text(json.dumps(rows))
    return path


def _device(metric: str, target: str):
    def run(bench, value):
        from sam3m4.cli import main

        kw = {"image_ms": value} if metric == schema.IMAGE_LATENCY_MS else {"track_ms": 1000.0 / value}
        results = _device_file(bench, **kw)
        argv = ["device", "import", str(results), "--run", bench.store.run, "--root", str(bench.store.dir.parent),
                "--pte-dir", str(bench.tmp_path / "pte"), "--targets", str(bench.targets_path)]
        assert main(argv) == 0
        test_stage5.test_on_device(QNN, metric, target, bench.store, bench.gate, bench.release)
    return run


# --- benchmarks (`sam3m4 bench`: judged by sam3m4.export.bench.judge, not by a pytest gate) -------------------
def _bench(key: str):
    def run(bench, value):
        from sam3m4.export.bench import BENCH_TARGETS, judge, summarise

        int4_mb, fp16_mb, xnn_ms, int8_ms, matmul, gflops, ref_s = 10.0, 25.0, 40.0, 20.0, 200.0, 10.0, 36.6
        if key == "coreml_int4_mb":
            int4_mb = value
        elif key == "coreml_fp16_mb":
            fp16_mb = value
        elif key == "xnnpack_int8_ratio":
            int8_ms = value * xnn_ms
        elif key == "speedup":
            ref_s = value * int8_ms / 1e3
        elif key == "flop_floor_ratio":  # the fastest XNNPACK case over the FLOP floor (gflops / matmul)
            int8_ms, xnn_ms = value * gflops / matmul * 1e3, 1e4
        case = lambda b, m, mb, ms=None: {"backend": b, "mode": m, "ok": True, "pte_mb": mb,  # noqa: E731
                                          "image_p50_ms": ms}
        row = {"gflops": gflops, "cases": [case("coreml", "int4", int4_mb), case("coreml", "fp16", fp16_mb),
                                            case("xnnpack", "fp16", None, xnn_ms),
                                            case("xnnpack", "int8_int4", None, int8_ms)]}
        name = next(n for n, k in BENCH_TARGETS.items() if k == key)
        measured, ok = judge(summarise(row, matmul, ref_s), bench.targets)[name]
        bench.verdict(bench.targets[name].metric, measured, ok)
        assert ok, f"benchmark {name}: {measured:.4g} misses {bench.targets[name].describe()}"
    return run


# --- the registry: target name -> planted case -----------------------------------------------------------------
_SLOW = (pytest.mark.slow, pytest.mark.stage4)
_EMB_MIOU, _EMB_MIOU_MODEL = _embedded_teacher(schema.MIOU, "embedded_teacher_miou")
_EMB_F1, _EMB_F1_MODEL = _embedded_teacher(schema.PRESENCE_F1, "embedded_teacher_presence_f1")
_T5 = "test_stage5.test_cpu_numerics_and_host_latency"

PLANTED: dict[str, Plant] = {
    "student_miou_ratio": Plant("test_stage3.test_student_keeps_teacher_quality",
                                _ratio_gate(schema.MIOU, "student_miou_ratio"),
                                _zero_teacher_ratio(schema.MIOU, "student_miou_ratio")),
    "student_presence_f1_ratio": Plant("test_stage3.test_student_keeps_teacher_quality",
                                       _ratio_gate(schema.PRESENCE_F1, "student_presence_f1_ratio"),
                                       _zero_teacher_ratio(schema.PRESENCE_F1, "student_presence_f1_ratio")),
    "student_image_cgf1_ratio": Plant("test_stage3.test_student_keeps_teacher_cgf1", _cgf1_ratio, _cgf1_zero_teacher),
    "student_video_jf_ratio": Plant("test_stage3_video.test_student_video_jf_keeps_teacher_quality", _jf_ratio,
                                    _jf_zero_teacher, plants="J&F records"),
    "video_distill_miou_cost": Plant("test_stage3_video.test_video_distillation_keeps_image_quality", _miou_cost,
                                     plants="mIoU records"),
    "embedded_teacher_miou": Plant("test_stage3.test_embedded_teacher_is_useful", _EMB_MIOU, _EMB_MIOU_MODEL),
    "embedded_teacher_presence_f1": Plant("test_stage3.test_embedded_teacher_is_useful", _EMB_F1, _EMB_F1_MODEL),
    "quant_miou_drop": Plant("test_stage4.test_quantized_mode_keeps_fp16_miou", _quant_drop, _quant_one_bit,
                             plants="the Stage 4 small set's model, scored, against a planted fp16 baseline",
                             marks=_SLOW),
    "presence_threshold_on_plateau": Plant("test_stage4.test_shipped_threshold_on_plateau", _plateau,
                                           plants="presence scores"),
    "presence_ece_rise": Plant("test_stage4.test_shipped_ece_rise", _ece_rise, plants="presence scores"),
    "pte_size_mb": Plant("test_stage5.test_pte_size", _pte_size, _pte_grown, plants="a .pte file of that size"),
    "npu_utilisation": Plant("test_stage5.test_npu_coverage", _npu, plants="export records"),
    "host_xnnpack_latency_ms": Plant(_T5, lambda b, v: _xnn(b, {schema.HOST_IMAGE_LATENCY_MS: v}),
                                     _undelegated_program, plants="export records"),
    "xnnpack_mask_iou": Plant(_T5, lambda b, v: _xnn(b, {f"{schema.MASK_IOU}/forward": v}), _wrong_numerics(None),
                              plants="export records"),
    "xnnpack_int8_mac_share": Plant("test_stage5.test_xnnpack_int8_mac_share", _int8_share, _float_program,
                                    plants="export records"),
    "deployed_miou_drop": Plant("test_stage5.test_deployed_accuracy",
                                _deployed(schema.DEPLOYED_MIOU_DROP, "deployed_miou_drop"), plants="export records"),
    "export_fidelity_miou": Plant("test_stage5.test_deployed_accuracy",
                                  _deployed(schema.EXPORT_MIOU_GAP, "export_fidelity_miou"), plants="export records"),
    "bundle_mask_iou": Plant("test_stage5.test_bundle_verification", _bundle, plants="export records"),
    "image_latency_ms": Plant("test_stage5.test_on_device", _device(schema.IMAGE_LATENCY_MS, "image_latency_ms"),
                              plants="an Android benchmark results file, imported with `sam3m4 device import`"),
    "video_fps": Plant("test_stage5.test_on_device", _device(schema.VIDEO_FPS, "video_fps"),
                       plants="an Android benchmark results file with the tracker step's latency, imported"),
    "bench_coreml_int4_mb": Plant("sam3m4.export.bench.judge", _bench("coreml_int4_mb"), plants="a bench row"),
    "bench_coreml_fp16_mb": Plant("sam3m4.export.bench.judge", _bench("coreml_fp16_mb"), plants="a bench row"),
    "bench_xnnpack_int8_speed_ratio": Plant("sam3m4.export.bench.judge", _bench("xnnpack_int8_ratio"),
                                            plants="a bench row"),
    "bench_speedup": Plant("sam3m4.export.bench.judge", _bench("speedup"), plants="a bench row"),
    "bench_flop_floor_ratio": Plant("sam3m4.export.bench.judge", _bench("flop_floor_ratio"), plants="a bench row"),
}
for _method in schema.PTE_METHODS:
    PLANTED[f"xnnpack_max_abs_error_{_method}"] = Plant(
        _T5, lambda b, v, m=_method: _xnn(b, {schema.max_abs_error(m): v}),
        _wrong_numerics(_method) if _method != "track" else None, plants="export records")

_MODEL_MARKS = (pytest.mark.slow, pytest.mark.stage5, pytest.mark.xnnpack)
MODEL_MARKS = {name: _MODEL_MARKS for name in PLANTED
               if name.startswith(("xnnpack_m", "xnnpack_int8", "host_xnnpack"))} | {"quant_miou_drop": _SLOW}
"""Marks of the model / file plants that need a session-built model (the rest run in about a second)."""
