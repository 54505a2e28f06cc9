"""``sam3m4 device import``: both benchmark-app formats, one-line validation errors, .pte matching, the store."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from sam3m4.device import (DeviceMatchError, DeviceResult, device_metrics, match_pte, parse_android_results,
                           parse_ios_log, parse_results_file, split_pte_stem)
from sam3m4.device import cli as device_cli
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.results import ResultsStore, schema

ROOT = Path(__file__).resolve().parents[2]
ANDROID = ROOT / "fixtures" / "device" / "benchmark_results.json"
IOS = ROOT / "fixtures" / "device" / "ios_benchmark.log"
TARGETS = ROOT / "acceptance" / "targets.yaml"
PTES = ("repvit_m0_9_504_qnn_int8_int4.pte", "repvit_m0_9_504_track_qnn_int8_int4.pte",
        "repvit_m0_9_504_coreml_fp16.pte", "repvit_m0_9_504_track_coreml_fp16.pte")


def _one_line_error(exc_info, starts: str, *contains: str):
    text = str(exc_info.value)
    assert "\n" not in text, text
    assert text.startswith(starts), text
    for part in contains:
        assert part in text, text


def _ptes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in PTES:
        (folder / name).write_bytes(b"PTE0" + name.encode())
    return folder


def _row(**kw) -> DeviceResult:
    base = dict(model="repvit_m0_9_504", backend="qnn", quant="int8_int4", platform="android",
                device="samsung SM-S928B", os="Android 14", method="forward", metric="avg_inference_latency(ms)",
                value=40.0, unit="ms", source="r.json", location="[0]")
    return DeviceResult(**{**base, **kw})


# --- parsing ---------------------------------------------------------------------------------------
def test_split_pte_stem_handles_underscored_models_and_quant_names():
    assert split_pte_stem("repvit_m0_9_504_qnn_int8_int4") == ("repvit_m0_9_504", "qnn", "int8_int4")
    assert split_pte_stem("tiny_track_coreml_qat_int8_int4") == ("tiny_track", "coreml", "qat_int8_int4")
    assert split_pte_stem("tiny_xnnpack_int4") == ("tiny", "xnnpack", "int4")
    assert split_pte_stem("tiny_vulkan_fp16") is None and split_pte_stem("tiny_qnn_int2") is None


def test_android_results_are_rejoined_from_the_apps_greedy_split():
    rows = parse_android_results(ANDROID)
    assert len(rows) == 10
    first = rows[0]
    assert (first.model, first.backend, first.quant) == ("repvit_m0_9_504", "qnn", "int8_int4")
    assert first.platform == "android"
    assert (first.device, first.os, first.method) == ("samsung SM-S928B", "Android 14", "forward")
    assert (first.metric, first.unit, first.location) == ("avg_inference_latency(ms)", "ms", "[0]")
    assert first.pte_name == "repvit_m0_9_504_qnn_int8_int4.pte"
    assert {r.unit for r in rows if r.metric == "ram_pss_usage(mb)"} == {"MB"}
    assert {r.model for r in rows} == {"repvit_m0_9_504", "repvit_m0_9_504_track"}


def test_ios_log_rows_skip_noise_and_decode_the_test_name():
    rows = parse_ios_log(IOS)
    assert len(rows) == 8  # 3 load + 3 forward + 2 tracker lines; suite, started/passed and app lines skipped
    fwd = [r for r in rows if r.method == "forward" and r.model == "repvit_m0_9_504"]
    clock = next(r for r in fwd if r.metric == "Clock Monotonic Time, s")
    assert (clock.backend, clock.quant, clock.platform) == ("coreml", "fp16", "ios")
    assert (clock.device, clock.os, clock.value, clock.unit) == ("iPhone15,4", "iOS 17.2.1", 0.0381, "s")
    assert clock.location.startswith("line ")
    assert {r.unit for r in rows if r.metric.startswith("Memory")} == {"kB"}
    assert parse_results_file(IOS) == rows and parse_results_file(ANDROID) == parse_android_results(ANDROID)


def test_metrics_android():
    got = {(m.subject, m.metric): m.value for m in device_metrics(parse_android_results(ANDROID))}
    assert got[("android/qnn/int8_int4", "image_latency_ms")] == pytest.approx(41.70552305)  # trimmean, not avg
    assert got[("android/qnn/int8_int4", "video_fps")] == pytest.approx(1000 / 23.92767044)
    assert got[("android/qnn/int8_int4", "load_ms")] == pytest.approx(612.384115)
    assert got[("android/qnn/int8_int4", "memory_mb")] == pytest.approx(87.3125)
    assert got[("android/qnn/int8_int4", "track_memory_mb")] == pytest.approx(64.5703125)
    assert ("android/qnn/int8_int4", "load_status") not in got  # 0 = loaded


def test_metrics_ios_converts_seconds_and_kilobytes():
    got = {(m.subject, m.metric): m.value for m in device_metrics(parse_ios_log(IOS))}
    assert got[("ios/coreml/fp16", "image_latency_ms")] == pytest.approx(38.1)
    assert got[("ios/coreml/fp16", "load_ms")] == pytest.approx(241.0)
    assert got[("ios/coreml/fp16", "memory_mb")] == pytest.approx(96518.144 / 1024)
    assert got[("ios/coreml/fp16", "video_fps")] == pytest.approx(1000 / 21.4)


def test_avg_latency_is_used_without_trimmean_and_load_failure_is_reported():
    assert {m.metric: m.value for m in device_metrics([_row(value=50.0)])} == {"image_latency_ms": 50.0}
    rows = [_row(value=50.0), _row(metric="load_status", value=34.0, unit="", location="[1]")]
    got = {m.metric: (m.value, m.failed_stage) for m in device_metrics(rows)}
    # a latency of a program that did not load is not used: the gated metric is a failure at "load"
    assert got == {"image_latency_ms": (None, "load"), "load_status": (34.0, None)}


def test_ios_track_method_of_the_combined_pte_gives_fps():
    rows = [_row(platform="ios", backend="coreml", quant="fp16", method=method, metric="Clock Monotonic Time, s",
                 value=value, unit="s", device="iPhone15,4", os="iOS 17.2.1") for method, value in
            (("forward", 0.04), ("track", 0.025))]
    got = {m.metric: (m.value, m.row.pte_name) for m in device_metrics(rows)}
    assert got["image_latency_ms"][0] == pytest.approx(40.0) and got["video_fps"][0] == pytest.approx(40.0)
    assert got["image_latency_ms"][1] == got["video_fps"][1] == "repvit_m0_9_504_coreml_fp16.pte"


def test_two_devices_for_one_subject_is_an_error():
    with pytest.raises(DataFormatError) as err:
        device_metrics([_row(), _row(device="Google Pixel 8", location="[1]")])
    _one_line_error(err, "android/qnn/int8_int4: two image results", "Google Pixel 8")


# --- validation ------------------------------------------------------------------------------------
def _write_android(tmp_path: Path, edit) -> Path:
    data = json.loads(ANDROID.read_text())
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_malformed_json(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('[{"metric": "avg_inference_latency(ms)",')
    with pytest.raises(DataFormatError) as err:
        parse_results_file(path)
    _one_line_error(err, f"{path}: invalid JSON at line 1")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d[3]["benchmarkModel"].pop("name"), "[3].benchmarkModel.name: missing"),
    (lambda d: d[2].pop("deviceInfo"), "[2].deviceInfo: missing"),
    (lambda d: d[1]["deviceInfo"].pop("os"), "[1].deviceInfo.os: missing"),
    (lambda d: d[0].update(actualValue="41.7ms"), "[0].actualValue: expected a number, got '41.7ms'"),
    (lambda d: d[0].update(actualValue=True), "[0].actualValue: expected a number, got True"),
    (lambda d: d[4].update(metric=7), "[4].metric: expected a string"),
    (lambda d: d[5]["benchmarkModel"].update(backend="vulkan"), "[5].benchmarkModel: 'repvit_m0_9_504_track_qnn_vul"),
    (lambda d: d.__setitem__(6, "x"), "[6]: expected an object, got str"),
])
def test_android_field_errors_name_file_and_field(tmp_path, edit, message):
    path = _write_android(tmp_path, edit)
    with pytest.raises(DataFormatError) as err:
        parse_android_results(path)
    _one_line_error(err, f"{path}: {message}")


def test_android_non_finite_and_wrong_top_level(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('[{"benchmarkModel": {"name": "a_qnn_fp16", "backend": "", "quantization": ""}, "metric": "m", '
                    '"actualValue": NaN, "deviceInfo": {"device": "d", "os": "Android 14"}}]')
    with pytest.raises(DataFormatError) as err:
        parse_android_results(path)
    _one_line_error(err, f"{path}: [0].actualValue: expected a finite number")
    path.write_text('{"results": []}')
    with pytest.raises(DataFormatError) as err:
        parse_android_results(path)
    _one_line_error(err, f"{path}: expected a JSON list")


@pytest.mark.parametrize("bad, message", [
    ("average: 0.03x1,", ":2: average: expected a number, got '0.03x1'"),
    ("average: ,", ":2: average: expected a number, got ''"),
])
def test_ios_bad_number_names_the_line(tmp_path, bad, message):
    path = tmp_path / "ios.log"
    good = next(line for line in IOS.read_text().splitlines() if "average: 0.241," in line)
    path.write_text("Test Suite 'All tests' started\n" + good.replace("average: 0.241,", bad) + "\n")
    with pytest.raises(DataFormatError) as err:
        parse_ios_log(path)
    _one_line_error(err, f"{path}{message}")


def test_ios_bad_test_name_and_empty_log(tmp_path):
    path = tmp_path / "ios.log"
    path.write_text("Test Case '-[GenericTests test_forward_resnet50_pte_iOS_17_2_1_iPhone15_4]' measured "
                    "[Clock Monotonic Time, s] average: 0.01, relative standard deviation: 1%\n")
    with pytest.raises(DataFormatError) as err:
        parse_ios_log(path)
    _one_line_error(err, f"{path}:1: .pte name 'resnet50'")
    path.write_text("Test Suite 'All tests' started\n** TEST EXECUTE SUCCEEDED **\n")
    with pytest.raises(DataFormatError) as err:
        parse_ios_log(path)
    _one_line_error(err, f"{path}: no XCTest measurement lines")


# --- matching --------------------------------------------------------------------------------------
def test_match_by_exact_and_ios_cleaned_name(tmp_path):
    folder = _ptes(tmp_path / "export")
    m = match_pte(_row(), folder)
    assert m.path == folder / "repvit_m0_9_504_qnn_int8_int4.pte"
    assert m.sha256 == hashlib.sha256(m.path.read_bytes()).hexdigest()
    (folder / "repvit-m0.9_coreml_fp16.pte").write_bytes(b"x")  # the iOS test name shows it as repvit_m0_9_...
    ios_row = _row(model="repvit_m0_9", backend="coreml", quant="fp16", platform="ios")
    assert match_pte(ios_row, folder).path.name == "repvit-m0.9_coreml_fp16.pte"
    (folder / "repvit_m0.9_coreml_fp16.pte").write_bytes(b"y")
    with pytest.raises(DeviceMatchError) as err:
        match_pte(ios_row, folder)
    _one_line_error(err, "r.json [0]: repvit_m0_9_coreml_fp16.pte is ambiguous")
    with pytest.raises(DeviceMatchError) as err:
        match_pte(_row(quant="int4"), folder)
    _one_line_error(err, "r.json [0]: no repvit_m0_9_504_qnn_int4.pte in")


def test_sha256_expected_and_sidecar(tmp_path):
    folder = _ptes(tmp_path / "export")
    pte = folder / "repvit_m0_9_504_qnn_int8_int4.pte"
    digest = hashlib.sha256(pte.read_bytes()).hexdigest()
    assert match_pte(_row(), folder, expected_sha256=digest.upper()).sha256 == digest
    wrong = "0" * 64
    with pytest.raises(DeviceMatchError) as err:
        match_pte(_row(), folder, expected_sha256=wrong)
    _one_line_error(err, f"{pte}: sha256 {digest} is not the expected {wrong} (from --sha256)")
    sidecar = folder / (pte.name + ".sha256")
    sidecar.write_text(f"{wrong}  {pte.name}\n")
    with pytest.raises(DeviceMatchError) as err:
        match_pte(_row(), folder)
    _one_line_error(err, f"{pte}: sha256 {digest}", wrong, str(sidecar))
    sidecar.write_text("not-a-hash\n")
    with pytest.raises(DataFormatError) as err:
        match_pte(_row(), folder)
    _one_line_error(err, f"{sidecar}: expected a 64-digit hex sha256")


# --- CLI -------------------------------------------------------------------------------------------
def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sam3m4 device")
    device_cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_records_both_platforms(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    assert _cli("import", str(ANDROID), str(IOS), "--run", "t", "--targets", str(TARGETS)) == 0
    records = ResultsStore("t").records()
    assert {r.stage for r in records} == {schema.STAGE5}
    by = {(r.subject, r.metric): r for r in records}
    lat = by[("android/qnn/int8_int4", "image_latency_ms")]
    assert (lat.value, lat.unit, lat.target, lat.comparison, lat.passed) == (41.7055, "ms", 100.0, "<", True)
    assert lat.provenance == f"on-device: samsung SM-S928B, Android 14, ExecuTorch benchmark app ({ANDROID})"
    assert lat.artifact == str(Path("outputs/export/repvit_m0_9_504_qnn_int8_int4.pte"))
    assert lat.sha256 == hashlib.sha256((tmp_path / lat.artifact).read_bytes()).hexdigest()
    assert "trimmean_inference_latency(ms)" in lat.note
    fps = by[("android/qnn/int8_int4", "video_fps")]
    assert fps.passed is True and fps.artifact.endswith("repvit_m0_9_504_track_qnn_int8_int4.pte")
    ios = by[("ios/coreml/fp16", "image_latency_ms")]
    assert ios.value == pytest.approx(38.1) and ios.provenance.startswith("on-device: iPhone15,4, iOS 17.2.1, ")
    for key in (("ios/coreml/fp16", "load_ms"), ("ios/coreml/fp16", "memory_mb"), ("android/qnn/int8_int4", "load_ms")):
        assert key in by
    assert "recorded" in capsys.readouterr().out


def test_cli_sha_mismatch_records_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    with pytest.raises(DeviceMatchError) as err:
        _cli("import", str(ANDROID), "--run", "t", "--sha256", f"repvit_m0_9_504_track_qnn_int8_int4={'a' * 64}")
    _one_line_error(err, "outputs/export/repvit_m0_9_504_track_qnn_int8_int4.pte: sha256 ", "a" * 64)
    assert not ResultsStore("t").path.exists()
    with pytest.raises(ConfigError) as err:
        _cli("import", str(ANDROID), "--run", "t", "--sha256", "repvit_m0_9_504_qnn_int8_int4.pte")
    _one_line_error(err, "--sha256 'repvit_m0_9_504_qnn_int8_int4.pte': expected NAME=HEX")


def test_cli_missing_pte_and_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAM3M4_TARGETS", raising=False)  # no targets file above tmp_path: recorded ungated
    with pytest.raises(DeviceMatchError) as err:
        _cli("import", str(IOS), "--run", "t")
    _one_line_error(err, "outputs/export: no such folder")
    _ptes(tmp_path / "outputs" / "export")
    assert _cli("import", str(IOS), "--run", "t", "--dry-run") == 0
    assert not ResultsStore("t").path.exists()
    out = capsys.readouterr().out
    assert "ios/coreml/fp16" in out and "dry run" in out and "no targets file" in out


# --- impossible numbers, duplicates, malformed files (issue 14) ------------------------------------
@pytest.mark.parametrize("index, value, message", [
    (1, -41.7, "[1].actualValue: trimmean_inference_latency(ms) must be > 0 (a time), got -41.7"),
    (0, 0, "[0].actualValue: avg_inference_latency(ms) must be > 0 (a time), got 0.0"),
    (2, -612.4, "[2].actualValue: model_load_time(ms) must be > 0 (a time), got -612.4"),
    (4, -87.3, "[4].actualValue: ram_pss_usage(mb) must be >= 0 (a memory figure), got -87.3"),
    (3, -1, "[3].actualValue: load_status must be an integer >= 0 (an ExecuTorch error code), got -1.0"),
    (3, 0.5, "[3].actualValue: load_status must be an integer >= 0"),
])
def test_android_impossible_numbers_are_refused(tmp_path, index, value, message):
    path = _write_android(tmp_path, lambda d: d[index].update(actualValue=value))
    with pytest.raises(DataFormatError) as err:
        parse_results_file(path)
    _one_line_error(err, f"{path}: {message}")


def test_android_negative_device_memory_is_refused(tmp_path):
    path = _write_android(tmp_path, lambda d: d[2]["deviceInfo"].update(availMem=-5))
    with pytest.raises(DataFormatError) as err:
        parse_results_file(path)
    _one_line_error(err, f"{path}: [2].deviceInfo.availMem: must be >= 0")


@pytest.mark.parametrize("old, new, message", [
    ("average: 0.0381,", "average: -0.0381,", "average: Clock Monotonic Time, s must be > 0 (a time), got -0.0381"),
    ("average: 0.241,", "average: 0,", "average: Clock Monotonic Time, s must be > 0 (a time), got 0.0"),
    ("average: 96518.144,", "average: -96518.144,", "average: Memory Peak Physical, kB must be >= 0"),
])
def test_ios_impossible_numbers_name_the_line(tmp_path, old, new, message):
    text = IOS.read_text()
    lineno = next(i for i, line in enumerate(text.splitlines(), start=1) if old in line)
    path = tmp_path / "ios.log"
    path.write_text(text.replace(old, new))
    with pytest.raises(DataFormatError) as err:
        parse_results_file(path)
    _one_line_error(err, f"{path}:{lineno}: {message}")


def test_hand_built_impossible_rows_are_refused_too():
    with pytest.raises(DataFormatError) as err:
        device_metrics([_row(value=-3.0)])
    _one_line_error(err, "r.json [0]: avg_inference_latency(ms) must be > 0")
    with pytest.raises(DataFormatError) as err:
        device_metrics([_row(model="m_track", metric="Clock Monotonic Time, s", unit="s", value=5e-324)])
    _one_line_error(err, "r.json [0]: Clock Monotonic Time, s must be in [1e-05, 3600] s (a time")
    with pytest.raises(DataFormatError) as err:  # a 1e-6 ms step would read as 1e9 fps
        device_metrics([_row(model="m_track", metric="trimmean_inference_latency(ms)", unit="ms", value=1e-6)])
    _one_line_error(err, "r.json [0]: trimmean_inference_latency(ms) must be in [0.01, 3.6e+06] ms (a time")
    with pytest.raises(DataFormatError) as err:  # 1e306 s is inf ms: Infinity would reach results.jsonl
        device_metrics([_row(metric="Clock Monotonic Time, s", unit="s", value=1e306)])
    _one_line_error(err, "r.json [0]: Clock Monotonic Time, s must be in [1e-05, 3600] s (a time")


def test_two_files_measuring_the_same_pte_on_the_same_device_are_refused(tmp_path):
    copy = tmp_path / "again.json"
    copy.write_text(ANDROID.read_text())
    rows = parse_results_file(ANDROID) + parse_results_file(copy)
    with pytest.raises(DataFormatError) as err:
        device_metrics(rows)
    _one_line_error(err, f"{copy} [0]: avg_inference_latency(ms) of repvit_m0_9_504_qnn_int8_int4.pte on "
                         f"samsung SM-S928B (Android 14) was already given by {ANDROID} [0]")
    log = tmp_path / "twice.log"  # one log with the same test's lines twice (two runs pasted together)
    log.write_text(IOS.read_text() * 2)
    with pytest.raises(DataFormatError) as err:
        device_metrics(parse_ios_log(log))
    _one_line_error(err, f"{log} line ", "was already given by", f"{log} line ")


@pytest.mark.parametrize("name, body, message", [
    ("results.json", b"\xff\xfe[not text", "not UTF-8 text"),
    ("results.json", b"", "invalid JSON at line 1 column 1"),
    ("results.txt", b'{"benchmarkModel": {}}', "expected a JSON list of benchmark results, got dict"),
    ("results.json", b'[{"benchmarkModel": "x"}]', "[0].benchmarkModel: expected an object, got str"),
    ("results.json", b'[{"benchmarkModel": {"name": ["a"]}}]', "[0].benchmarkModel.name: expected a string, got list"),
    ("results.json", b"[1, 2]", "[0]: expected an object, got int"),
    ("results.json", b"[]", "no benchmark results (empty list)"),
])
def test_malformed_files_are_one_line_errors_from_the_cli(tmp_path, monkeypatch, capsys, name, body, message):
    from sam3m4.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    path.write_bytes(body)
    assert main(["device", "import", str(path), "--run", "t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sam3m4: error: {path}: ") and message in err and err.count("\n") == 1, err
    assert not ResultsStore("t").path.exists()


def test_cli_negative_latency_exits_2_and_records_nothing(tmp_path, monkeypatch, capsys):
    from sam3m4.cli import main

    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    bad = tmp_path / "ios.log"
    bad.write_text(IOS.read_text().replace("average: 0.0381,", "average: -0.0381,"))
    assert main(["device", "import", str(ANDROID), str(bad), "--run", "t", "--targets", str(TARGETS)]) == 2
    assert "Clock Monotonic Time, s must be > 0" in capsys.readouterr().err
    assert not ResultsStore("t").path.exists()


def test_cli_reimport_replaces_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    assert _cli("import", str(ANDROID), "--run", "t", "--targets", str(TARGETS)) == 0
    assert "replaces" not in capsys.readouterr().out
    faster = _write_android(tmp_path, lambda d: d[1].update(actualValue=30.0))
    assert _cli("import", str(faster), "--run", "t", "--targets", str(TARGETS)) == 0
    out = capsys.readouterr().out
    assert "note: android/qnn/int8_int4 image_latency_ms: replaces 41.7055 ms recorded" in out
    lat = ResultsStore("t").latest(stage=schema.STAGE5, subject="android/qnn/int8_int4", metric=schema.IMAGE_LATENCY_MS)
    assert lat.value == 30.0 and f"({faster}); replaces 41.7055 ms recorded " in lat.provenance
    assert str(ANDROID) in lat.provenance  # which file the replaced value came from


def test_cli_load_failure_is_a_failed_stage_not_a_number(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    failed = _write_android(tmp_path, lambda d: d[3].update(actualValue=34))
    assert _cli("import", str(failed), "--run", "t", "--targets", str(TARGETS)) == 0
    assert "FAIL (failed at load)" in capsys.readouterr().out
    lat = ResultsStore("t").latest(stage=schema.STAGE5, subject="android/qnn/int8_int4", metric=schema.IMAGE_LATENCY_MS)
    assert (lat.value, lat.failed_stage, lat.passed, lat.target) == (None, "load", None, None)
    assert "ExecuTorch error 34" in lat.note


def test_cli_targets_come_from_the_env_and_a_broken_file_stops(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ptes(tmp_path / "outputs" / "export")
    planted = tmp_path / "strict.yaml"
    planted.write_text("targets:\n  image_latency_ms: {metric: image_latency_ms, comparison: '<', value: 1}\n")
    monkeypatch.setenv("SAM3M4_TARGETS", str(planted))
    assert _cli("import", str(ANDROID), "--run", "t") == 0
    assert f"targets: {planted.name} (sha256 " in capsys.readouterr().out
    lat = ResultsStore("t").latest(stage=schema.STAGE5, subject="android/qnn/int8_int4", metric=schema.IMAGE_LATENCY_MS)
    assert (lat.target, lat.passed) == (1.0, False)
    planted.write_text("targets:\n  image_latency_ms: {metric: image_latency_ms, value: 1}\n")
    with pytest.raises(ConfigError) as err:
        _cli("import", str(ANDROID), "--run", "t2")
    _one_line_error(err, f"{planted}: targets.image_latency_ms.comparison: missing key")
    assert not ResultsStore("t2").path.exists()
