"""What stages hand on: the quantized model set of Stage 4 and the exported program of Stage 5, as objects."""

from __future__ import annotations

import os

import pytest
import torch

from sam3m4.checkpoint import Checkpoint, atomic_torch_save
from sam3m4.errors import DataFormatError
from sam3m4.export.export import ExportResult
from sam3m4.export.program import ExportedProgram
from sam3m4.models import build_student
from sam3m4.quantize import storage
from sam3m4.quantize.modes import apply_mode
from sam3m4.quantize.storage import QuantizedModel, QuantizedSet, save_quantized
from sam3m4.results import schema
from sam3m4.results.store import sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    """``<dir>/fp16/`` and ``<dir>/int4/`` as ``sam3m4 quantize`` saves them."""
    out = tmp_path_factory.mktemp("quantized")
    for mode in ("fp16", "int4"):
        torch.manual_seed(0)
        save_quantized(apply_mode(build_student("tiny").eval(), mode), out / mode, mode=mode, preset="tiny",
                       source="phase2.pt")
    return out


def test_a_quantized_set_reads_metadata_first_and_each_model_once(qdir, monkeypatch):
    qset = QuantizedSet.open(qdir)
    assert qset.modes == ["fp16", "int4"] and "int8_int4" not in qset and os.fspath(qset) == str(qdir)
    assert (qset["int4"].preset, qset["int4"].kind, qset["int4"].source) == ("tiny", "student", "phase2.pt")
    assert QuantizedSet.open(qset) is qset and QuantizedModel.open(qset["int4"]) is qset["int4"]
    reads = []
    real = storage.load_quantized
    monkeypatch.setattr(storage, "load_quantized", lambda *a, **kw: reads.append(a[0]) or real(*a, **kw))
    model = qset["int4"].load()
    assert qset["int4"].load() is model and reads == [qdir / "int4"]
    with pytest.raises(DataFormatError, match=r"int8_int4/: no quantized model for this mode \(has fp16, int4\)"):
        qset["int8_int4"]
    with pytest.raises(DataFormatError, match="no quantized model folders"):
        QuantizedSet.open(qdir / "fp16")


def test_export_takes_the_sets_model_without_reading_it_again(qdir, monkeypatch, tmp_path):
    """``export_case(quantized=QuantizedSet)``: the model the set holds is the one exported (QNN without its SDK:
    recorded as not available, nothing lowered)."""
    from sam3m4.export import case
    from sam3m4.results import ResultsStore

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    qset = QuantizedSet.open(qdir)
    held = qset["int4"].load()
    monkeypatch.setattr(case, "load_quantized", lambda *a, **kw: pytest.fail("the folder was read again"))
    student, tracker, meta = case.load_case_model("int4", qset, None)
    assert student is held and tracker is None and meta["mode"] == "int4"
    r = case.export_case("qnn", "int4", quantized=qset, out_dir=tmp_path / "pte", deployed=False, bundle_k=0,
                         store=ResultsStore("t", root=tmp_path / "reports"), echo=None)
    assert not r.ok and r.program is None and r.value(schema.EXPORT_OK) is False


def test_an_exported_program_carries_its_hash_and_notices_a_changed_file(tmp_path):
    pte = tmp_path / "sam3m4_tiny_xnnpack_fp16.pte"
    pte.write_bytes(b"program bytes")
    result = ExportResult(backend="xnnpack", mode="fp16", gets="fp16", path=pte, sha256=sha256_file(pte),
                          files={"forward": str(pte)}, size_bytes=13, methods=["encode_text", "forward"])
    program = result.program
    assert (program.path, program.backend, program.mode, program.methods) == (pte, "xnnpack", "fp16",
                                                                               ("encode_text", "forward"))
    assert program.subject == schema.export_subject("xnnpack", "fp16") and os.fspath(program) == str(pte)
    assert program.check() is program
    assert ExportedProgram.open(pte, backend="xnnpack", mode="fp16").sha256 == program.sha256
    pte.write_bytes(b"other bytes")
    with pytest.raises(DataFormatError, match=r"sam3m4_tiny_xnnpack_fp16.pte: sha256: .* changed since xnnpack/fp16"):
        program.check()
    assert ExportResult(backend="xnnpack", mode="fp16", gets="", failed_stage="lower").program is None


def test_the_split_layout_opens_with_its_method_files(tmp_path):
    for name in ("m_xnnpack_fp16.pte", "m_xnnpack_fp16.encode_text.pte", "m_xnnpack_fp16.track.pte"):
        (tmp_path / name).write_bytes(name.encode())
    program = ExportedProgram.open(tmp_path / "m_xnnpack_fp16.pte", backend="xnnpack", mode="fp16")
    assert sorted(program.files) == ["encode_text", "forward", "track"]
    assert program.size_bytes == sum(len(p.name) for p in tmp_path.iterdir())
    with pytest.raises(DataFormatError, match="no such .pte"):
        ExportedProgram.open(tmp_path / "gone.pte", backend="xnnpack", mode="fp16")


def test_checkpoint_errors_stay_one_line_naming_the_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"x.pt: checkpoint not found"):
        Checkpoint.open(tmp_path / "x.pt")
    (tmp_path / "bad.pt").write_bytes(b"PK not a zip")
    with pytest.raises(DataFormatError, match=r"bad.pt: corrupt or truncated checkpoint"):
        Checkpoint.open(tmp_path / "bad.pt")
    atomic_torch_save({"model": {}, "phase": 3, "epoch": 1, "step": 1, "preset": "tiny",
                       "config": {"data": "data/v"}}, tmp_path / "v1.pt")  # version 1: phase 3 was a tracker
    ck = Checkpoint.open(tmp_path / "v1.pt")
    assert (ck.kind, ck.data_root, ck.preset, str(ck)) == ("tracker", "data/v", "tiny", str(tmp_path / "v1.pt"))
    assert ck.sha256 == sha256_file(tmp_path / "v1.pt") and "phase 3 epoch 1 step 1" in ck.provenance
