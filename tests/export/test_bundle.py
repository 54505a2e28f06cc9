"""Verification bundles (.bpte): written from a lowered program, verified with the ExecuTorch runtime on this host
(a correct bundle passes, a planted wrong reference fails), read back, and imported from a phone by sha256."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sam3m4.device import cli as device_cli
from sam3m4.device.match import DeviceMatchError
from sam3m4.errors import DataFormatError
from sam3m4.export.bundle import (BundleCase, BundleResult, MethodResult, bundle_cases, load_bundle_result,
                                  read_bundle, verify_bundle, write_bundle)
from sam3m4.results import ResultsStore, schema

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ROOT / "acceptance" / "targets.yaml"


class TinyImagePath(nn.Module):
    """pixels (1,3,16,16) -> the image path's five outputs with Q = 4 queries on an 8x8 mask grid."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 6)

    def forward(self, pixels):
        masks = self.conv(pixels)  # (1, 4, 8, 8)
        pooled = self.head(masks.mean((2, 3)))  # (1, 6)
        return masks, pooled[:, :4], masks[:, :, :1, :4].reshape(1, 4, 4), pooled[:, 4:5], masks[:, :1]


class TinyText(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)

    def forward(self, ids, mask):
        return self.emb(ids) * mask[..., None].float(), mask.float()


@pytest.fixture(scope="module")
def program():
    """A two-method XNNPACK program (``encode_text``, ``forward``) and its modules, lowered once."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    mods = {"forward": TinyImagePath().eval(), "encode_text": TinyText().eval()}
    examples = {"forward": (torch.rand(1, 3, 16, 16) * 2 - 1,),
                "encode_text": (torch.tensor([[1, 2, 3, 0]]), torch.tensor([[1, 1, 1, 0]]))}
    eps = {m: torch.export.export(mods[m], examples[m]) for m in mods}
    return to_edge_transform_and_lower(eps, partitioner=[XnnpackPartitioner()]).to_executorch(), mods


def _cases(mods, k: int = 3, plant: bool = False) -> dict:
    torch.manual_seed(1)
    out = {"forward": [], "encode_text": []}
    with torch.no_grad():
        for i in range(k):
            px = torch.rand(1, 3, 16, 16) * 2 - 1
            ref = tuple(t.contiguous() for t in mods["forward"](px))
            if plant:  # a wrong reference: query 0's mask flipped
                ref = (torch.cat([-ref[0][:, :1], ref[0][:, 1:]], 1), *ref[1:])
            out["forward"].append(BundleCase((px,), ref, f"case {i}"))
            ids, mask = torch.tensor([[1, 2 + i, 3, 0]]), torch.tensor([[1, 1, 1, 0]])
            out["encode_text"].append(BundleCase((ids, mask), tuple(mods["encode_text"](ids, mask)), f"case {i}"))
    return out


def test_bundle_written_verifies_here_and_reads_back(tmp_path, program):
    prog, mods = program
    cases = _cases(mods)
    b = write_bundle(prog, tmp_path / "m_xnnpack_fp16.bpte", tmp_path / "m_xnnpack_fp16.pte", cases)
    assert b.cases == {"encode_text": 3, "forward": 3} and b.size_bytes == b.path.stat().st_size
    back = read_bundle(b.path)
    assert torch.equal(back["forward"][2][0][0], cases["forward"][2].inputs[0])
    assert back["encode_text"][1][0][0].dtype == torch.int64
    assert torch.equal(back["forward"][0][1][0], cases["forward"][0].expected[0])
    res = verify_bundle(b.path)
    assert res.passed and res.bundle_sha256 == b.sha256
    assert res.methods["forward"].mask_iou == pytest.approx(1.0) and res.methods["forward"].max_abs_error < 1e-4
    assert res.methods["encode_text"].mask_iou is None


def test_planted_wrong_reference_fails_verification(tmp_path, program):
    prog, mods = program
    b = write_bundle(prog, tmp_path / "m_xnnpack_fp16.bpte", tmp_path / "m_xnnpack_fp16.pte", _cases(mods, plant=True))
    res = verify_bundle(b.path)
    fwd = res.methods["forward"]
    assert not res.passed and not fwd.passed and fwd.failed_cases == [0, 1, 2]  # the runtime's own verdict
    assert res.methods["encode_text"].passed
    assert fwd.mask_iou < 0.9 and fwd.max_abs_error > 0.01


def test_bundle_rejects_a_case_the_program_cannot_take(tmp_path, program):
    prog, mods = program
    cases = _cases(mods, k=1)
    cases["encode_text"][0].inputs = (cases["encode_text"][0].inputs[0].int(), cases["encode_text"][0].inputs[1])
    with pytest.raises(AssertionError, match="dtype"):
        write_bundle(prog, tmp_path / "x.bpte", tmp_path / "x.pte", cases)
    assert not (tmp_path / "x.bpte").exists()


def test_bundle_cases_use_real_val_pairs():
    from sam3m4.data import SacoImageDataset
    from sam3m4.export.bundle import _plain
    from sam3m4.models import build_student
    from sam3m4.export.export import method_module

    student = build_student("tiny").eval()
    val = SacoImageDataset(ROOT / "fixtures" / "synth" / "saco_image" / "val.json")
    cases = bundle_cases(student, None, images=val, k=2)
    assert set(cases) == {"encode_text", "forward"} and len(cases["forward"]) == 2
    first = cases["forward"][0]
    assert first.source.startswith("val pair ") and first.inputs[0].shape == (1, 3, student.image_size,
                                                                              student.image_size)
    assert torch.equal(first.inputs[1], cases["encode_text"][0].expected[0])  # forward's prompt = eager encode_text
    assert first.expected[0].shape[1] == student.num_queries

    # an XNNPACK static-int8 program's expected outputs come from its converted graph, given as a reference
    seen = []

    def converted(*inputs):
        seen.append(inputs)
        return tuple(torch.full_like(t, 7.0) if t.is_floating_point() else t for t in _plain(
            method_module(student, "forward")(*inputs)))

    ref = bundle_cases(student, None, images=val, k=2, references={"forward": converted})
    assert len(seen) == 2 and all(torch.equal(a, b) for a, b in zip(seen[0], ref["forward"][0].inputs))
    assert all((t == 7.0).all() for t in ref["forward"][0].expected if t.is_floating_point())
    assert torch.equal(ref["encode_text"][0].expected[0], cases["encode_text"][0].expected[0])  # others: eager


def _result(bpte: Path, sha: str, iou: float = 0.97) -> dict:
    return BundleResult(bundle=bpte.name, bundle_sha256=sha, device="iPhone15,4", os="iOS 18.1",
                        runtime="ExecuTorch 1.5.1 example_runner", methods={
                            "forward": MethodResult(cases=8, passed=False, failed_cases=[1], max_abs_error=0.2,
                                                    mask_iou=iou),
                            "encode_text": MethodResult(cases=8, passed=True, max_abs_error=1e-3)}).model_dump()


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sam3m4 device")
    device_cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_device_import_of_a_phone_bundle_result_is_bound_to_the_bpte_sha256(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "export"
    folder.mkdir()
    bpte = folder / "sam3m4_tiny_coreml_int4.bpte"
    bpte.write_bytes(b"bundle bytes")
    sha = hashlib.sha256(b"bundle bytes").hexdigest()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_result(bpte, sha)))
    assert _cli("import", str(good), "--pte-dir", str(folder), "--run", "t", "--targets", str(TARGETS)) == 0
    by = {r.metric: r for r in ResultsStore("t").records()}
    iou = by[schema.BUNDLE_MASK_IOU]
    assert (iou.subject, iou.value, iou.passed, iou.sha256) == ("ios/coreml/int4", 0.97, True, sha)
    assert by[schema.BUNDLE_PASSED].value is False and "forward: fail" in iou.note
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_result(bpte, "b" * 64)))
    with pytest.raises(DeviceMatchError, match="is not the sha256 of"):
        _cli("import", str(bad), "--pte-dir", str(folder), "--run", "t2")
    assert not ResultsStore("t2").path.exists()


def test_bundle_result_errors_name_file_and_field(tmp_path):
    path = tmp_path / "r.json"
    data = _result(tmp_path / "a_qnn_fp16.bpte", "c" * 64)
    data["methods"]["forward"]["mask_iou"] = 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"r.json: methods.forward.mask_iou: "):
        load_bundle_result(path)
