"""A failed deployed gate shows the per-operator gap rows of its case in the report and on the page."""

from __future__ import annotations

import json

from sam3m4.report.op_gaps import op_gap_lines, op_gaps_html
from sam3m4.results import ResultsStore, schema


def test_failed_deployed_gate_shows_top_operator_rows(tmp_path):
    store = ResultsStore("t", root=tmp_path)
    gaps = tmp_path / "m_xnnpack_int8_int4.op_gaps.json"
    gaps.write_text(json.dumps({"granularity": "per operator", "seconds": 3.2, "methods": {"forward": {
        "method": "forward", "compared": 40, "worst_snr_db": 4.0, "error": None, "rows": [
            {"order": 7, "ops": ["conv2d_3", "relu_2"], "runtime_ops": ["DELEGATE_CALL"], "snr_db": 4.0,
             "max_abs_error": 2.5, "ref_max_abs": 3.0, "introduced_db": 61.0,
             "source": "sam3m4/models/image_encoder.py:40"}]}}}))
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.OP_GAP_SNR_DB, value=4.0,
                 unit=schema.DB, artifact=gaps)
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.MASK_IOU, value=0.95,
                 target=0.9, comparison=">=")
    assert op_gap_lines(store.records()) == [] and op_gaps_html(store.records()) == ""  # every gate passed
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.BUNDLE_MASK_IOU, value=0.4,
                 target=0.9, comparison=">=")
    text = "\n".join(op_gap_lines(store.records()))
    assert "`xnnpack/int8_int4` bundle_mask_iou" in text and "conv2d_3, relu_2 | 4.0 | 61.0" in text
    assert "image_encoder.py:40" in op_gaps_html(store.records())
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.BUNDLE_MASK_IOU, value=0.2,
                 target=0.9, comparison=">=")
    assert "no per-operator gaps recorded" in "\n".join(op_gap_lines(store.records()))
