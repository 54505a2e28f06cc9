"""Stage 5 gates: each ``backend:mode`` case of ``--stage5-cases`` against the targets file.

The cases come from the flows (:mod:`sam3m4.export.flows`, built in :func:`acceptance.conftest.pytest_generate_tests`):
``case.flow`` says whether the backend targets an NPU, which phone platform measures it, and why this host cannot
execute its ``.pte`` (None when it can); the tests ask it instead of comparing backend names.

A case's numbers are the run's ``stage5`` records (``sam3m4 export`` and ``sam3m4 device import``); when the
run has none the case is exported here first (:func:`acceptance.conftest.stage5_export`). Gates:

* AOT, measured on this host: export succeeds, ``.pte`` < 50 MB, NPU coverage > 90% (Core ML, QNN);
* XNNPACK, which runs here: numerics vs eager (mask IoU) and the host latency budget;
* on device (``-m device``): image latency < 100 ms and video FPS > 15 from imported benchmark results.

Skip or fail is decided from the record's fields (:mod:`outcomes`): a record with ``failed_stage`` fails; one
whose ``outcome`` is unsupported / not measurable here (a backend whose toolchain is missing), or no record (a
device number nobody imported), is skipped with the reason; with ``--release`` those skips are failures.
"""

from __future__ import annotations

import pytest
from outcomes import settle

from sam3m4.results import schema

pytestmark = [pytest.mark.stage5, pytest.mark.slow]


def _need(records: dict, metric: str, release: bool, why: str):
    return settle(records.get(metric), release=release, what=metric, why=why)


def _exported(stage5_export, case, release):
    recs = stage5_export(case.backend, case.mode)
    settle(recs.get(schema.EXPORT_OK), release=release, what=f"export {case.subject}", why="no export_ok record")
    return recs


def test_pte_size(case, stage5_export, gate, release):
    recs = _exported(stage5_export, case, release)
    rec = recs[schema.PTE_MB]
    rec = gate(stage=schema.STAGE5, subject=case.subject, metric=schema.PTE_MB, value=rec.value, target="pte_size_mb",
               provenance=f"{rec.provenance}; file size of {rec.artifact}", artifact=rec.artifact)
    assert rec.passed, f"budget exceeded: {rec.value:.1f} MB .pte, target {rec.comparison} {rec.target} MB"


def test_npu_coverage(case, stage5_export, gate, release, extras):
    if not case.flow.is_npu:
        pytest.skip(f"{case.backend} targets the {case.flow.processor}: no NPU coverage")
    recs = _exported(stage5_export, case, release)
    ane = recs.get(schema.ANE_PERCENT)  # Core ML on macOS 14.4+: MLComputePlan's ANE share; else the AOT op share
    rec = ane if ane is not None and ane.value is not None else recs[schema.NPU_PERCENT]
    import pytest_html

    extras.append(pytest_html.extras.text(f"{case.subject}: {rec.note or 'every op delegated'}",
                                          name="non-delegated ops"))
    rec = gate(stage=schema.STAGE5, subject=case.subject, metric=schema.NPU_PERCENT, value=rec.value,
               target="npu_utilisation", provenance=rec.provenance, note=rec.note)
    assert rec.passed, f"metric below gate: {rec.value:.1f}% of ops on the NPU ({rec.note}), target > {rec.target}%"


def test_cpu_numerics_and_host_latency(case, stage5_export, gate, release):
    """A CPU flow that runs here (XNNPACK): the ``.pte`` against eager, and its host latency."""
    if case.flow.is_npu:
        pytest.skip(f"{case.backend} targets an NPU: its host numbers are gated by test_npu_flow_on_this_host")
    if case.flow.cannot_run_here():
        pytest.skip(case.flow.cannot_run_here())
    recs = _exported(stage5_export, case, release)
    iou = _need(recs, f"{schema.MASK_IOU}/forward", release, "no numerics record")
    rec = gate(stage=schema.STAGE5, subject=case.subject, metric=schema.MASK_IOU, value=iou.value,
               target="xnnpack_mask_iou", provenance=iou.provenance)
    assert rec.passed, f"metric below gate: .pte vs eager mask IoU {iou.value:.3f}, target >= {rec.target}"
    ms = _need(recs, schema.HOST_IMAGE_LATENCY_MS, release, "no host latency record")
    rec = gate(stage=schema.STAGE5, subject=case.subject, metric=schema.HOST_IMAGE_LATENCY_MS, value=ms.value,
               target="host_xnnpack_latency_ms", provenance=ms.provenance)
    assert rec.passed, f"budget exceeded: host p50 {ms.value:.1f} ms, target < {rec.target} ms"


def test_npu_flow_on_this_host(case, stage5_export, gate, release):
    """An NPU flow whose ``.pte`` this host executes (Core ML on macOS: ANE + CPU): its latency and FPS against the
    device targets. UNTESTED on this project's Linux hosts; elsewhere it is skipped with the flow's reason (the
    ``device`` gates cover phones)."""
    if not case.flow.is_npu:
        pytest.skip(f"{case.backend} targets the {case.flow.processor}: gated by test_cpu_numerics_and_host_latency")
    if case.flow.cannot_run_here():
        pytest.skip(case.flow.cannot_run_here())
    recs = _exported(stage5_export, case, release)
    for metric, target in ((schema.HOST_IMAGE_LATENCY_MS, "image_latency_ms"), (schema.HOST_VIDEO_FPS, "video_fps")):
        rec = _need(recs, metric, release, f"no {metric} record from `sam3m4 export` on this host")
        g = gate(stage=schema.STAGE5, subject=case.subject, metric=metric, value=rec.value, target=target,
                 provenance=rec.provenance, artifact=rec.artifact)
        assert g.passed, f"{case.subject} on this host: {metric} {rec.value:.1f} misses target {g.comparison} {g.target}"


@pytest.mark.device
@pytest.mark.parametrize("metric, target", [(schema.IMAGE_LATENCY_MS, "image_latency_ms"),
                                            (schema.VIDEO_FPS, "video_fps")])
def test_on_device(case, metric, target, results_store, gate, release):
    subject = case.device_subject
    rec = results_store.latest(stage=schema.STAGE5, subject=subject, metric=metric)
    rec = _need({metric: rec} if rec else {}, metric, release,
                f"not measured on device: no {subject} result in reports/{results_store.run}; run the ExecuTorch "
                f"benchmark app with the .pte and `sam3m4 device import FILE --run {results_store.run}`")
    g = gate(stage=schema.STAGE5, subject=subject, metric=metric, value=rec.value, target=target,
             provenance=rec.provenance, artifact=rec.artifact)
    assert g.passed, f"on-device {metric} {rec.value:.1f} misses target {g.comparison} {g.target}"


def test_bundle_verification(case, stage5_export, results_store, gate, release):
    """The ``.pte`` run where it ships, through its verification bundle (``<pte stem>.bpte``: real val inputs and
    the eager outputs), against that reference: mask IoU of the worst method. A phone's result comes from
    ``sam3m4 device import`` (bound to the ``.bpte``'s sha256); a flow that runs here (XNNPACK; Core ML on a Mac)
    was run by ``sam3m4 export`` itself. Until one exists the gate is not measured, naming the command."""
    recs = _exported(stage5_export, case, release)
    device = results_store.latest(stage=schema.STAGE5, subject=case.device_subject, metric=schema.BUNDLE_MASK_IOU)
    rec = _need({schema.BUNDLE_MASK_IOU: device or recs.get(schema.BUNDLE_MASK_IOU)}, schema.BUNDLE_MASK_IOU, release,
                f"no bundle result for {case.subject}: run `sam3m4 export --backend {case.backend} --mode {case.mode}`, "
                f"run its .bpte on the device and `sam3m4 device import RESULT.json --run {results_store.run}`")
    g = gate(stage=schema.STAGE5, subject=rec.subject, metric=schema.BUNDLE_MASK_IOU, value=rec.value,
             target="bundle_mask_iou", provenance=rec.provenance, artifact=rec.artifact, note=rec.note)
    assert g.passed, (f"metric below gate: {rec.subject} bundle mask IoU {rec.value:.3f} ({rec.note}), "
                      f"target {g.comparison} {g.target}")
