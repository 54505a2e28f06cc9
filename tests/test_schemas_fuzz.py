"""Property-based tests: random mutations of a valid file of each kind, fed to its real reader.

Each file kind starts from a small valid file; hypothesis changes 1-3 of its values (wrong types, out-of-range
numbers, deep nesting, unknown or missing keys) or its bytes (truncation, non-UTF-8, NaN, a 1e400), and the
reader must either accept it or raise the project's one-line error (:class:`~sam3m4.errors.Sam3m4Error`, which the
CLI turns into exit 2) naming the file: never another exception, never a multi-line message. A few kinds also go
through the CLI (``sam3m4 data check``, ``sam3m4 device import --dry-run``): exit 0 or 2, never 1.

    python -m pytest tests/test_schemas_fuzz.py -q -p no:xdist
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam3m4.cli import main
from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.data.rle import encode_mask
from sam3m4.data.sav import SavDataset
from sam3m4.device.results import device_metrics, parse_results_file
from sam3m4.errors import Sam3m4Error
from sam3m4.eval.saco_format import check_image_gt, check_image_preds, check_video_gt, check_video_preds
from sam3m4.export.token_table import Vocabulary
from sam3m4.pipeline.runner import load_state
from sam3m4.paths import PROJECT_ROOT_ENV
from sam3m4.quantize.decision import read_decision
from sam3m4.quantize.storage import load_quantized
from sam3m4.results.store import ResultsStore
from sam3m4.results.targets import parse_targets
from sam3m4.storage import prune
from sam3m4.results import schema

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures"
EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# --- mutations -------------------------------------------------------------------------------------------------
BAD_VALUES = [None, True, False, 0, -1, -5, 1, 2**63, 2**70, 1e300, -1e300, 1e-300, 0.5, -0.5, 3.0, "", " ", "123",
              "x", "../../etc/passwd", "\u00e9", [], {}, [1, 2, 3], ["1", "2"], [1.5], {"a": 1}, [[[[[]]]]],
              {"x": {"y": {"z": None}}}]


def _paths(doc, prefix=()):
    """Every value's path (at most 12 levels deep: a deeply nested mutation is not walked into)."""
    todo = [(doc, prefix)]
    while todo:
        value, path = todo.pop()
        yield path
        if len(path) < 12 and isinstance(value, dict):
            todo += [(v, path + (k,)) for k, v in value.items()]
        elif len(path) < 12 and isinstance(value, list):
            todo += [(v, path + (i,)) for i, v in enumerate(value)]


def _at(doc, path):
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated_doc(draw, base):
    """``base`` with 1-3 values replaced, removed, wrapped, nested deeply, or an unknown key added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra", "wrap", "deep", "dup"]))
        if op == "deep":
            new = copy.deepcopy(draw(st.sampled_from(BAD_VALUES)))
            for _ in range(draw(st.sampled_from([50, 3000]))):
                new = [new]
        elif op == "wrap":
            new = [_at(doc, path)]
        else:
            new = copy.deepcopy(draw(st.sampled_from(BAD_VALUES)))
        if not path:
            doc = new if op in ("replace", "deep", "wrap") else doc
            if op == "deep":
                break
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        if op == "delete":
            del parent[key]
        elif op == "extra" and isinstance(parent, dict):
            parent["unknown_key_" + str(key)] = new
        elif op == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[key] = new
        if op == "deep":  # the last change: nothing walks into (or copies) a value thousands deep
            break
    return doc


@st.composite
def mutated_bytes(draw, base):
    """A mutated document as bytes: JSON, or JSON truncated, re-encoded, or with a non-finite number in it."""
    doc = draw(mutated_doc(base)) if draw(st.integers(0, 4)) else copy.deepcopy(base)
    try:
        text = json.dumps(doc)
    except RecursionError:  # deeper than json.dumps goes: the same depth, written by hand
        return b"[" * 5000 + b"]" * 5000
    kind = draw(st.sampled_from(["json"] * 5 + ["truncate", "latin1", "nan", "bignum", "bom", "nul"]))
    if kind == "truncate":
        return text.encode()[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "latin1":
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode() + b"\xe9\xff" + text[cut:].encode()
    if kind in ("nan", "bignum"):
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"])) if kind == "nan" else "9" * 5000
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        if not digits:
            return text.encode()
        i = draw(st.sampled_from(digits))
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] in ".eE-+"):
            j += 1
        return (text[:i] + token + text[j:]).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if kind == "nul":
        return text.encode() + b"\x00"
    return text.encode()


def refused_cleanly(read, path: Path):
    """Run ``read()``: it returns, or raises a one-line Sam3m4Error that names ``path``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except Sam3m4Error as err:
        text = str(err)
        assert text.strip() and "\n" not in text, repr(text)
        assert path.name in text, text
        return None


def cli_exit(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, err.getvalue()


def assert_cli_clean(argv: list[str]) -> None:
    code, err = cli_exit(argv)
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sam3m4: error: "), err


# --- valid starting files -------------------------------------------------------------------------------------
def _small_image_gt() -> dict:
    data = json.loads((FIX / "synth" / "saco_image" / "train.json").read_text())
    images = data["images"][:3]
    ids = {im["id"] for im in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids][:3]}


def _small_video_gt() -> dict:
    data = json.loads((FIX / "synth" / "saco_video" / "train.json").read_text())
    video = {**data["videos"][0]}
    n = 4
    video.update(file_names=video["file_names"][:n], length=n)
    pairs = [p for p in data["video_np_pairs"] if p["video_id"] == video["id"]][:2]
    keys = {(p["video_id"], p["category_id"]) for p in pairs}
    anns = [{**a, **{k: a[k][:n] for k in ("segmentations", "bboxes", "areas") if k in a}}
            for a in data["annotations"] if (a["video_id"], a["category_id"]) in keys][:2]
    cats = [c for c in data["categories"] if c["id"] in {p["category_id"] for p in pairs}]
    return {"videos": [video], "categories": cats, "video_np_pairs": pairs, "annotations": anns}


def _sav() -> dict:
    masks = np.zeros((2, 3, 16, 16), dtype=bool)        # (objects, annotated frames, H, W)
    masks[0, :, 2:6, 2:6] = True
    masks[1, 1:, 8:12, 8:12] = True
    return {"video_id": "sav_000001", "video_height": 16.0, "video_width": 16.0, "video_frame_count": 12.0,
            "masklet": [[encode_mask(masks[n, t]) for n in range(2)] for t in range(3)], "masklet_id": [0, 1],
            "extra": "kept"}


def _image_preds(gt: dict) -> list:
    pair = gt["images"][0]
    mask = np.zeros((pair["height"], pair["width"]), dtype=bool)
    mask[4:20, 6:30] = True
    return [{"image_id": pair["id"], "category_id": 1, "segmentation": encode_mask(mask), "bbox": [6.0, 4.0, 24.0, 16.0],
             "score": 0.9}, {"image_id": gt["images"][1]["id"], "category_id": 1, "segmentation": encode_mask(mask),
                             "score": 0.1}]


def _video_preds(gt: dict) -> list:
    video = gt["videos"][0]
    mask = np.zeros((video["height"], video["width"]), dtype=bool)
    mask[4:20, 6:30] = True
    pair = gt["video_np_pairs"][0]
    t = video["length"]
    return [{"video_id": video["id"], "category_id": pair["category_id"], "segmentations": [encode_mask(mask)] * t,
             "bboxes": [[6.0, 4.0, 24.0, 16.0]] * t, "areas": [int(mask.sum())] * t, "score": 0.7}]


RECORD = {"run": "r", "stage": schema.STAGE5, "subject": "android/qnn/int8_int4", "metric": schema.IMAGE_LATENCY_MS,
          "value": 41.7, "unit": "ms", "target": 100.0, "comparison": "<", "passed": True, "provenance": "fuzz",
          "artifact": "outputs/export/x.pte", "sha256": "a" * 64, "note": "", "failed_stage": None, "outcome": None,
          "timestamp": "2026-01-01T00:00:00+00:00"}
TARGETS = {"targets": {"pte_size_mb": {"metric": schema.PTE_MB, "comparison": "<", "value": 50, "unit": "MB",
                                       "regression_tolerance": 1.0, "description": "size"}}}
STATE = {"format": "sam3m4-pipeline-state-v1",
         "stages": {"data": {"argv": [["-m", "sam3m4", "data"]], "inputs": "a" * 64, "outputs": "b" * 64, "rc": 0,
                             "seconds": 1.5, "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:00:02Z",
                             "peak_rss_mb": 100.0}},
         "hashes": {"configs/x.yaml": [10, 123456789, "c" * 64]}}
MANIFEST = {"format": "sam3m4-run-manifest-v1", "run": "r", "config": "configs/r.yaml",
            "written": "2026-01-01T00:00:00+00:00", "settings": {"run": "r"},
            "artifacts": [{"kind": "checkpoint", "path": "checkpoints/distillation/phase2_best.pt", "bytes": 10,
                           "sha256": "d" * 64}, {"kind": "log", "path": "logs/x", "bytes": 0, "sha256": None}]}
PRUNE_LOG = {"version": 1, "mode": "dry_run", "timestamp": "20260101T000000.000000Z", "root": "/p",
             "settings": {"keep_last": 2, "vis_keep_every": 5, "include_cache": False}, "fingerprint": "e" * 64,
             "delete": [["checkpoints/distillation/a.pt", 10, 1234]], "before": {"total": 100, "checkpoints": 10},
             "planned_after": {"total": 90, "checkpoints": 0}}
QUANT = {"mode": "int4", "preset": "tiny", "kind": "student", "source": "checkpoints/x.pt"}
_POINT = {"threshold": 0.315, "how": "fitted", "calibration_pairs": 96, "held_out_pairs": 104, "f1_calibration": 0.81,
          "f1_held_out": 0.79, "f1_held_out_at_default": 0.65, "best_f1_held_out": 0.8, "split": "by image"}
DECISION = {"format": "sam3m4-decision/1", "preset": "tiny", "source": "checkpoints/x.pt", "num_pairs": 200,
            "target": {"name": "quant_miou_drop", "comparison": "<=", "value": 2.0, "unit": "points", "basis": "absolute"},
            "backends": {"xnnpack": {"mode": "int8_int4", "criterion_met": True, "candidates": ["fp16", "int8_int4"],
                                     "passing": ["int8_int4"], "miou": 0.567, "miou_drop": 0.4, "quantized": "int8_int4",
                                     "pte_name": "sam3m4_tiny_xnnpack_int8_int4.pte", "presence_threshold": 0.315}},
            "scores": {"fp16": {"miou": 0.571, "presence_f1": 0.82, "num_pairs": 200},
                       "int8_int4": {"miou": 0.567, "presence_f1": 0.65, "num_pairs": 200}},
            "presence": {"int8_int4": _POINT}}
VOCAB = {"clip_ids": [0, 320, 49406, 49407], "source": "phrases.txt", "rows": 4}
ANDROID = json.loads((FIX / "device" / "benchmark_results.json").read_text())


# --- one property per file kind ------------------------------------------------------------------------------
@FUZZ
@given(raw=mutated_bytes(_small_image_gt()))
def test_saco_image_gt(tmp_path, raw):
    path = tmp_path / "val.json"
    path.write_bytes(raw)

    def read():
        ds = SacoImageDataset(path, image_root=FIX / "synth" / "saco_image" / "images")
        for i in range(len(ds)):
            ds.masks(i)
        check_image_gt(path)
    refused_cleanly(read, path)


@FUZZ
@given(raw=mutated_bytes(_small_video_gt()))
def test_saco_video_gt(tmp_path, raw):
    path = tmp_path / "val.json"
    path.write_bytes(raw)

    def read():
        ds = SacoVideoDataset(path, frame_root=FIX / "synth" / "saco_video" / "JPEGImages")
        for i in range(len(ds)):
            ds.masks(i)
        check_video_gt(path)
    refused_cleanly(read, path)


@FUZZ
@given(raw=mutated_bytes(_sav()))
def test_sav(tmp_path, raw):
    path = tmp_path / "sav_000001_manual.json"
    path.write_bytes(raw)

    def read():
        ds = SavDataset(path)
        assert all(v["height"] > 0 and v["frame_count"] > 0 for v in ds.videos)
    refused_cleanly(read, path)


@pytest.fixture(scope="module")
def image_gt(tmp_path_factory):
    path = tmp_path_factory.mktemp("gt") / "gt.json"
    gt = _small_image_gt()
    for im in gt["images"]:
        im["is_instance_exhaustive"] = 1
    for j, ann in enumerate(gt["annotations"]):
        ann.setdefault("id", j + 1)
        ann.setdefault("category_id", 1)
    path.write_text(json.dumps(gt))
    return check_image_gt(path), gt


@FUZZ
@given(data=st.data())
def test_saco_image_predictions(tmp_path, image_gt, data):
    gt, doc = image_gt
    path = tmp_path / "preds.json"
    path.write_bytes(data.draw(mutated_bytes(_image_preds(doc))))
    n = refused_cleanly(lambda: check_image_preds(path, gt), path)
    if n is not None:  # accepted: every score in [0, 1], every box size >= 0
        for p in json.loads(path.read_text()):
            assert 0 <= p["score"] <= 1 and ("bbox" not in p or p["bbox"] is None or min(p["bbox"][2:]) >= 0)


@pytest.fixture(scope="module")
def video_gt(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgt") / "gt.json"
    gt = _small_video_gt()
    path.write_text(json.dumps(gt))
    return check_video_gt(path), gt


@FUZZ
@given(data=st.data())
def test_saco_video_predictions(tmp_path, video_gt, data):
    gt, doc = video_gt
    path = tmp_path / "vpreds.json"
    path.write_bytes(data.draw(mutated_bytes(_video_preds(doc))))
    preds = refused_cleanly(lambda: check_video_preds(path, gt), path)
    for p in preds or []:
        assert 0 <= p["score"] <= 1 and all(a is None or a >= 0 for a in p["areas"])
        assert all(b[2] >= 0 and b[3] >= 0 for b in p["bboxes"])


@FUZZ
@given(raw=mutated_bytes(RECORD))
def test_results_records(tmp_path, raw):
    """A damaged line is skipped with a warning naming it; a record read back has string names, finite numbers."""
    store = ResultsStore("r", root=tmp_path)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(raw + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = store.records()
    for rec in records:
        assert all(isinstance(getattr(rec, k), str) and getattr(rec, k) for k in ("run", "stage", "subject", "metric"))
        assert not isinstance(rec.value, float) or np.isfinite(rec.value)
    assert (len(records) + len(caught) >= 1 or not raw.strip()) and all("\n" not in str(w.message) for w in caught)


@FUZZ
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5),
                       st.none(), st.booleans()),
       subject=st.one_of(st.text(max_size=4), st.lists(st.integers(), max_size=2), st.none()))
def test_results_records_at_write_time(tmp_path, value, subject):
    """Writing a NaN, an Infinity or a non-string subject is refused in one line; the file never holds one."""
    store = ResultsStore("w", root=tmp_path)
    try:
        store.record(stage=schema.STAGE5, subject=subject, metric="m", value=value)
    except Sam3m4Error as err:
        assert "\n" not in str(err) and "results.jsonl" in str(err)
    if store.path.exists():
        text = store.path.read_text()
        bare = []  # NaN / Infinity written as JSON numbers (a string subject "NaN" is fine)
        for line in text.splitlines():
            json.loads(line, parse_constant=bare.append)
        assert bare == []
        assert all(isinstance(r.subject, str) for r in store.records())


@FUZZ
@given(doc=mutated_doc(TARGETS))
def test_targets(doc):
    path = Path("acceptance/targets.yaml")
    refused_cleanly(lambda: parse_targets(doc, str(path)), path)


@FUZZ
@given(raw=mutated_bytes(ANDROID))
def test_device_android_results(tmp_path, raw):
    path = tmp_path / "benchmark_results.json"
    path.write_bytes(raw)

    def read():
        for m in device_metrics(parse_results_file(path)):
            assert m.value is None or (np.isfinite(m.value) and (m.metric != schema.VIDEO_FPS or m.value <= 1e5))
    refused_cleanly(read, path)


@FUZZ
@given(raw=mutated_bytes(STATE))
def test_pipeline_state(tmp_path, raw):
    path = tmp_path / "pipeline_state.json"
    path.write_bytes(raw)
    state = refused_cleanly(lambda: load_state(path), path)
    if state is not None:
        assert isinstance(state["stages"], dict) and all(isinstance(s["argv"], list) for s in state["stages"].values())


@FUZZ
@given(raw=mutated_bytes(MANIFEST))
def test_run_manifest_as_prune_reads_it(tmp_path, raw):
    path = tmp_path / "reports" / "r" / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    refs = refused_cleanly(lambda: prune.references(tmp_path, []), path)
    assert refs is None or all(isinstance(k, str) for k in refs)


@FUZZ
@given(raw=mutated_bytes(PRUNE_LOG))
def test_prune_log(tmp_path, raw):
    path = tmp_path / "storage_prune_dry_run_x.log"
    path.write_bytes(b"sam3m4 prune dry run\n" + prune.MARK.encode() + raw.replace(b"\n", b" ") + b"\n")
    data = refused_cleanly(lambda: prune.read_log(path), path)
    assert data is None or isinstance(data["delete"], list)


@FUZZ
@given(raw=mutated_bytes(QUANT))
def test_quantized_json(tmp_path, raw):
    (tmp_path / "quantized.json").write_bytes(raw)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")  # the meta is checked before the weights
    refused_cleanly(lambda: load_quantized(tmp_path), tmp_path)


@FUZZ
@given(raw=mutated_bytes(DECISION))
def test_decision_json(tmp_path, raw):
    path = tmp_path / "decision.json"
    path.write_bytes(raw)
    d = refused_cleanly(lambda: read_decision(path), path)
    if d is not None:  # what is accepted is what Stage 5 can use as it is
        assert all(0 <= b.presence_threshold <= 1 and "/" not in b.pte_name for b in d.backends.values())


def _bad_decision(path: Path, **change) -> Path:
    doc = copy.deepcopy(DECISION)
    for where, value in change.items():
        *parents, key = where.split("__")
        node = doc
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    path.write_text(json.dumps(doc))
    return path


_DELETE = object()


@pytest.mark.parametrize("change, message", [
    ({"preset": _DELETE}, r"decision\.json: preset: missing key$"),
    ({"backends__xnnpack__criterion_met": _DELETE}, r"decision\.json: backends\.xnnpack\.criterion_met: missing key$"),
    ({"num_pairs": "200"}, r"decision\.json: num_pairs: expected int, got str$"),
    ({"backends__xnnpack__miou": True}, r"decision\.json: backends\.xnnpack\.miou: expected number, got bool$"),
    ({"backends__xnnpack__candidates": "fp16"}, r"decision\.json: backends\.xnnpack\.candidates: expected list"),
    ({"backends__tflite": DECISION["backends"]["xnnpack"]}, r"decision\.json: backends\.tflite: unknown backend; choices"),
    ({"backends__xnnpack__mode": "int4"}, r"decision\.json: backends\.xnnpack\.mode: 'int4' is not a mode xnnpack lowers"),
    ({"backends__xnnpack__passing": ["int3"]}, r"decision\.json: backends\.xnnpack\.passing: unknown mode 'int3'"),
    ({"scores__int2": {"miou": 0.1, "presence_f1": 0.1, "num_pairs": 1}}, r"decision\.json: scores\.int2: unknown mode"),
    ({"presence__int8_int4__how": "guessed"}, r"decision\.json: presence\.int8_int4\.how: expected 'fitted'"),
    ({"presence__int8_int4__threshold": 1.5}, r"decision\.json: presence\.int8_int4\.threshold: must be <= 1"),
    ({"backends__xnnpack__pte_name": "../../outside.pte"}, r"decision\.json: backends\.xnnpack\.pte_name: expected a "
                                                          r"\.pte file name without a folder"),
    ({"format": "sam3m4-decision/0"}, r"decision\.json: format: expected 'sam3m4-decision/1'"),
    ({"target__surprise": 1}, r"decision\.json: target\.surprise: unknown key$"),
])
def test_bad_decision_json_is_one_line_naming_file_and_field(tmp_path, change, message):
    path = _bad_decision(tmp_path / "decision.json", **change)
    with pytest.raises(Sam3m4Error, match=message) as err:
        read_decision(tmp_path)
    assert "\n" not in str(err.value)


def test_decision_json_nan_truncated_and_a_symlink_out_of_the_project(tmp_path, monkeypatch):
    path = tmp_path / "proj" / "q" / "decision.json"
    path.parent.mkdir(parents=True)
    text = json.dumps(DECISION)
    path.write_text(text.replace("0.567", "NaN", 1))
    with pytest.raises(Sam3m4Error, match=r"decision\.json:\d+:\d+: invalid JSON: NaN is not a finite number$"):
        read_decision(path)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(Sam3m4Error, match=r"decision\.json:1:\d+: invalid JSON: "):
        read_decision(path)
    outside = tmp_path / "outside" / "decision.json"
    outside.parent.mkdir()
    outside.write_text(text)
    path.unlink()
    path.symlink_to(outside)
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path / "proj"))
    with pytest.raises(Sam3m4Error, match=rf"decision\.json: refused to read: a symlink leads it to {outside}, outside "
                                          "the project root"):
        read_decision(path.parent)
    inside = path.parent / "kept.json"  # a link inside the project is an ordinary file
    inside.write_text(text)
    path.unlink()
    path.symlink_to(inside)
    assert read_decision(path).backends["xnnpack"].presence_threshold == 0.315


@FUZZ
@given(raw=mutated_bytes(VOCAB))
def test_vocabulary_json(tmp_path, raw):
    path = tmp_path / "deploy.vocab.json"
    path.write_bytes(raw)
    vocab = refused_cleanly(lambda: Vocabulary.from_file(path), path)
    if vocab is not None:
        assert all(type(i) is int and 0 <= i < 49408 for i in vocab.ids) and list(vocab.ids) == sorted(set(vocab.ids))


@FUZZ
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_vocabulary_phrase_list(tmp_path, raw):
    path = tmp_path / "phrases.txt"
    path.write_bytes(raw)
    refused_cleanly(lambda: Vocabulary.from_file(path), path)


# --- the same files through the CLI ---------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=mutated_bytes(_small_image_gt()))
def test_cli_data_check(tmp_path, raw):
    path = tmp_path / "val.json"
    path.write_bytes(raw)
    assert_cli_clean(["data", "check", str(path), "--root", str(FIX / "synth" / "saco_image" / "images")])


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=mutated_bytes(ANDROID))
def test_cli_device_import(tmp_path, raw):
    path = tmp_path / "benchmark_results.json"
    path.write_bytes(raw)
    assert_cli_clean(["device", "import", str(path), "--dry-run", "--pte-dir", str(tmp_path)])


def test_named_bad_inputs_of_issue_25(tmp_path):
    """The held-out examples the issue names, each a one-line error (or refused write)."""
    cases = {
        "pipeline_state.json": ([1, 2], lambda p: load_state(p)),
        "manifest.json": ({"artifacts": 5}, None),
        "deploy.vocab.json": ({"clip_ids": "123"}, lambda p: Vocabulary.from_file(p)),
    }
    for name, (doc, read) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        if read is not None:
            with pytest.raises(Sam3m4Error, match=name):
                read(path)
    (tmp_path / "state2.json").write_text(json.dumps({"format": "sam3m4-pipeline-state-v1"}))
    with pytest.raises(Sam3m4Error, match="stages: missing key"):
        load_state(tmp_path / "state2.json")
    for ids in ([1.0, 2.0], [True], "1e400"):
        (tmp_path / "v.vocab.json").write_text(json.dumps({"clip_ids": ids}) if ids != "1e400" else
                                               '{"clip_ids": [1e400]}')
        with pytest.raises(Sam3m4Error, match="clip_ids|1e400 is not a finite number"):
            Vocabulary.from_file(tmp_path / "v.vocab.json")
    (tmp_path / "reports" / "r").mkdir(parents=True)
    (tmp_path / "reports" / "r" / "manifest.json").write_text(json.dumps({"artifacts": 5}))
    with pytest.raises(Sam3m4Error, match="manifest.json: unreadable run manifest"):
        prune.references(tmp_path, [])
    store = ResultsStore("r", root=tmp_path / "reports")
    inf = store.record(stage=schema.STAGE5, subject="a/b/c", metric=schema.IMAGE_LATENCY_MS, value=1e306 * 1000)
    assert inf.value is None and inf.failed_stage == "metric" and "Infinity" not in store.path.read_text()
    store.path.write_text(json.dumps({**RECORD, "subject": ["a"]}) + "\n")
    with pytest.warns(UserWarning, match=r"subject: expected str, got list"):
        assert store.records() == []
