"""Stage 5 export on the tiny student (random weights): XNNPACK runs here, Core ML lowers here, QNN is absent.

One export per module-scoped fixture (lowering is the slow part); Core ML is lowered but never executed
(needs Apple hardware); QNN must report the missing SDK without importing ``executorch.backends.qualcomm``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sam3m4.export.delegation import count_delegation
from sam3m4.export.export import export_pte, records
from sam3m4.export.flows import FLOWS, QNN_NOT_FOUND, get_flow
from sam3m4.models import build_student
from sam3m4.models.video import StudentTracker
from sam3m4.quantize.modes import MODES, apply_mode
from sam3m4.results import schema

pytestmark = pytest.mark.usefixtures("one_thread")


def _tracker(mode: str) -> StudentTracker:
    """A tiny tracker (seeded random weights) whose student and memory are both in ``mode``."""
    torch.manual_seed(0)
    return apply_mode(StudentTracker(build_student("tiny")).eval(), mode).eval()


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def xnn_fp16(out_dir):
    tracker = _tracker("fp16")
    result = export_pte(tracker.student, backend="xnnpack", mode="fp16", out_dir=out_dir, model_name="tiny",
                        tracker=tracker, methods=["forward", "track"])  # encode_text: the int8_int4 fixture
    return result, tracker


@pytest.fixture(scope="module")
def xnn_8da4w(out_dir):
    """encode_text only (lowering is the slow part): 8da4w Linear layers and the 4-bit token table."""
    tracker = _tracker("int8_int4")
    result = export_pte(tracker.student, backend="xnnpack", mode="int8_int4", out_dir=out_dir, model_name="tiny",
                        methods=["encode_text"])
    return result, tracker


def _qualcomm_imported() -> bool:
    return any(name.startswith("executorch.backends.qualcomm") for name in sys.modules)


# --- fast: flows as data, unsupported modes, QNN absent ---------------------------------------------------------
def test_every_flow_maps_every_mode_and_says_why_not():
    assert set(FLOWS) == {"coreml", "qnn", "xnnpack"}
    assert all(set(f.modes) == set(MODES) for f in FLOWS.values())
    assert not get_flow("xnnpack").support("int4").supported
    assert "weight-only" in get_flow("xnnpack").support("int4").reason
    assert not get_flow("coreml").support("int8_int4").supported
    assert get_flow("coreml").support("int4").supported and get_flow("xnnpack").support("int8_int4").supported


def test_int4_on_xnnpack_is_reported_unsupported_not_raised(tmp_path):
    model = build_student("tiny").eval()  # never touched: the flow refuses before anything runs
    r = export_pte(model, backend="xnnpack", mode="int4", out_dir=tmp_path, model_name="tiny")
    assert not r.ok and r.unsupported and r.failed_stage == "lower"
    assert "XNNPACK does not lower weight-only int4" in r.error
    assert not list(tmp_path.iterdir())


def test_qnn_without_sdk_says_so_and_never_imports_qualcomm(tmp_path, monkeypatch):
    assert not _qualcomm_imported()
    for root in (None, str(tmp_path / "no-such-sdk")):
        if root is None:
            monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
        else:
            monkeypatch.setenv("QNN_SDK_ROOT", root)
        assert get_flow("qnn").available() == (False, QNN_NOT_FOUND)
        r = export_pte(build_student("tiny").eval(), backend="qnn", mode="fp16", out_dir=tmp_path, model_name="t")
        assert (r.ok, r.failed_stage, r.error) == (False, "lower", QNN_NOT_FOUND)
    assert not _qualcomm_imported()


def test_int8_row_token_table_is_bit_exact_and_restored():
    from torchao.quantization import quantize_

    from sam3m4.export.token_table import Int8RowEmbedding, int8_row_tables
    from sam3m4.quantize.modes import embedding_config, is_quantizable_embedding

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(100, 64))
    quantize_(model, embedding_config(), filter_fn=is_quantizable_embedding)
    ids, original = torch.tensor([[3, 99, 0, 7]]), model[0]
    with torch.no_grad(), int8_row_tables(model) as n:
        assert n == 1 and isinstance(model[0], Int8RowEmbedding) and model[0].qdata.dtype == torch.int8
        assert torch.equal(model(ids), original(ids))  # same arithmetic as torchao's dequantize + lookup
    assert model[0] is original


def test_records_of_a_failed_export_say_only_that_it_failed():
    from sam3m4.export.export import ExportResult, records

    r = ExportResult(backend="coreml", mode="int8_int4", gets="-", failed_stage="lower", error="unsupported: x")
    (rec,) = records(r)
    assert (rec["metric"], rec["value"], rec["subject"], rec["note"]) == ("export_ok", False, "coreml/int8_int4",
                                                                          "unsupported: x")


def test_delegation_count_agrees_with_executorch_get_delegation_info():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    class M(nn.Module):
        def forward(self, x):
            return torch.cumsum(torch.relu(x @ x.T), dim=-1) + 1  # cumsum stays on the portable CPU ops

    ep = torch.export.export(M(), (torch.randn(4, 4),))
    gm = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).exported_program().graph_module
    d, info = count_delegation(gm, "XnnpackBackend"), get_delegation_info(gm)
    getitems = sum(v.delegated for k, v in info.delegation_by_operator.items() if k == "getitem")
    assert d.delegated == info.num_delegated_nodes - getitems > 0
    assert d.total - d.delegated == sum(d.non_delegated_ops.values()) > 0
    assert 0 < d.coverage < 1 and count_delegation(gm, "CoreMLBackend").delegated == 0


# --- slow: real exports of the tiny student ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.xnnpack
def test_xnnpack_fp16_image_and_track_methods_run_and_match_eager(xnn_fp16):
    from sam3m4.export.runtime import benchmark_pte, check_pte

    r, tracker = xnn_fp16
    assert r.ok, (r.failed_stage, r.error)
    assert r.path.name == "tiny_xnnpack_fp16.pte" and r.size_bytes == r.path.stat().st_size
    assert r.methods == ["forward", "track"] and r.layout == "one multi-method program" and len(r.sha256) == 64
    assert all(0 < d.coverage <= 1 for d in r.delegation.values()) and not r.is_npu
    checks = check_pte(r.path, tracker.student, tracker=tracker)
    assert set(checks) == {"forward", "track"}
    assert all(err < 1e-3 for c in checks.values() for err in c.max_abs_err.values()), checks
    assert checks["forward"].mask_iou > 0.99 and checks["track"].mask_iou > 0.99
    lat = benchmark_pte(r.path, "track", tracker.student, tracker=tracker, warmup=1, runs=3)
    assert lat["runs"] == 3 and lat["p50_ms"] > 0 and lat["fps"] == pytest.approx(1000 / lat["p50_ms"])


@pytest.mark.slow
@pytest.mark.xnnpack
def test_xnnpack_int8_int4_lowers_runs_and_stays_close(xnn_8da4w):
    from sam3m4.export.runtime import check_pte

    r, tracker = xnn_8da4w
    assert r.ok, (r.failed_stage, r.error)
    assert r.methods == ["encode_text"] and r.delegation["encode_text"].delegated > 0
    check = check_pte(r.path, tracker.student)["encode_text"]  # runs the int8-row token table on stock kernels
    assert check.max_abs_err["prompt_mask"] == 0
    assert check.max_abs_err["prompt_tokens"] < 0.05 * check.ref_max_abs["prompt_tokens"], check  # 8-bit acts


@pytest.mark.slow
@pytest.mark.coreml
def test_coreml_fp16_lowers_and_reports_npu_coverage(tmp_path):
    torch.manual_seed(0)
    model = apply_mode(build_student("tiny").eval(), "fp16")
    r = export_pte(model, backend="coreml", mode="fp16", out_dir=tmp_path, model_name="tiny", methods=["forward"])
    assert r.ok, (r.failed_stage, r.error)
    assert r.path.is_file() and r.path.name == "tiny_coreml_fp16.pte" and r.is_npu
    assert r.delegation["forward"].delegated > 0
    assert all(d.total == d.delegated + sum(d.non_delegated_ops.values()) for d in r.delegation.values())
    d = r.delegation["forward"]  # one method: coverage is its delegated share, and the record says it in percent
    assert r.coverage == pytest.approx(d.delegated / d.total)
    npu = next(x for x in records(r) if x["metric"] == "npu_percent")
    assert npu["value"] == pytest.approx(100 * d.delegated / d.total)
    from sam3m4.export.ane import ComputePlanUnavailable, ane_share, compute_plan_available, coreml_partitions

    parts = coreml_partitions(r.path, tmp_path / "mlpackages")  # ExecuTorch's extractor, any OS
    assert parts and all(p.exists() for p in parts)
    if not compute_plan_available()[0]:
        with pytest.raises(ComputePlanUnavailable, match="MLComputePlan needs macOS 14.4"):
            ane_share(r.path)


def test_cli_exports_from_a_checkpoint_and_records_why_qnn_is_missing(tmp_path, monkeypatch):
    """``sam3m4 export --ckpt``: the mode is applied to the checkpoint's student; no SDK -> recorded, exit 1."""
    from sam3m4.cli import main
    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.results import ResultsStore

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # the store lives under ./reports/<run>
    atomic_torch_save({"model": build_student("tiny").state_dict(), "preset": "tiny", "phase": 2, "epoch": 1,
                       "step": 1}, tmp_path / "phase2.pt")
    assert main(["export", "--backend", "qnn", "--mode", "int8_int4", "--ckpt", "phase2.pt", "--run", "t"]) == 1
    rec = ResultsStore("t").latest(stage=schema.STAGE5, subject="qnn/int8_int4", metric=schema.EXPORT_OK)
    assert rec.value is False and QNN_NOT_FOUND in rec.provenance
    assert not _qualcomm_imported()


def test_only_backends_this_host_can_execute_are_timed(monkeypatch):
    """XNNPACK runs anywhere; Core ML only on macOS (where the pip runtime has the backend); QNN never on a host."""
    from sam3m4.export import flows

    monkeypatch.setattr(flows.sys, "platform", "linux")
    assert flows.XNNPACK.runs_here() and not flows.COREML.runs_here() and not flows.QNN.runs_here()
    assert flows.XNNPACK.cannot_run_here() is None
    assert flows.COREML.cannot_run_here() == "Core ML executes only on macOS/iOS (this host: linux)"
    monkeypatch.setattr(flows.sys, "platform", "darwin")
    assert flows.COREML.runs_here() and not flows.QNN.runs_here() and flows.COREML.cannot_run_here() is None
    assert "Snapdragon" in flows.QNN.cannot_run_here()


def test_flows_say_their_platform_and_processor():
    """The Stage 5 matrix reads these: NPU or CPU, and the phone platform whose benchmark app measures the .pte."""
    from sam3m4.export import flows

    assert {f.name: (f.processor, f.platform) for f in flows.FLOWS.values()} == {
        "coreml": ("NPU", "ios"), "qnn": ("NPU", "android"), "xnnpack": ("CPU", "android")}
    assert [f.name for f in flows.FLOWS.values() if f.has_compute_plan] == ["coreml"]


# --- convolutions: each backend's own quantizer (issue 18) ------------------------------------------------------
@pytest.mark.xnnpack
def test_pt2e_convs_quantizes_the_convolutions_only():
    """PT2E XNNPACKQuantizer annotates conv weights (per channel) and leaves Linear float. With dynamic activations
    a conv whose input is channels-first (made by a reshape, like the mask head's ``memory_proj``) stays float:
    XNNPACK's channels-last pass mis-rewires such a program (convs.nhwc_input); static activations take it."""
    from sam3m4.quantize.convs import pt2e_convs

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder, self.lin = nn.Conv2d(16, 32, 3, padding=1), nn.Linear(32, 8)
            self.memory_proj = nn.Conv2d(32, 32, 1)

        def forward(self, x):
            y = self.image_encoder(x)  # (1, 32, 8, 8)
            seq = y.flatten(2).transpose(1, 2) * 2  # (1, 64, 32): a token sequence, like the decoder's memory
            return (self.lin(self.memory_proj(seq.transpose(1, 2).reshape(1, 32, 8, 8)).mean((2, 3))),)

    torch.manual_seed(0)
    m, x = M().eval(), (torch.randn(1, 16, 8, 8),)
    for dynamic, convs in ((True, 1), (False, 2)):
        gm = pt2e_convs(m, x, dynamic=dynamic, calibration=[x])
        targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
        assert sum("dequantize_per_channel" in t for t in targets) == convs
        assert any("choose_qparams" in t for t in targets) == dynamic  # dynamic: no calibration data
        ref, got = m(*x)[0], gm(*x)[0]
        assert not torch.equal(ref, got) and torch.allclose(ref, got, atol=0.05 * float(ref.abs().max()))


@pytest.mark.coreml
def test_coreml_int4_asks_coremltools_to_compress_the_convolutions():
    ok, why = get_flow("coreml").available()
    if not ok:
        pytest.skip(why)
    from sam3m4.quantize.convs import COREML_WEIGHT_CONFIG

    def spec(mode):
        specs = get_flow("coreml").partitioners(mode)[0].delegation_spec.compile_specs
        return [s for s in specs if s.key == "op_linear_quantizer_config"]

    assert not spec("fp16")
    (int4,) = spec("int4")
    import json

    assert json.loads(int4.value) == COREML_WEIGHT_CONFIG and spec("qat_int4")
