"""``sam3m4 bench``: benchmark arithmetic and verdicts, the README table, and one real tiny export."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam3m4.errors import Sam3m4Error
from sam3m4.export.bench import (README_END, README_START, best_preset, judge, markdown_table, summarise,
                                 update_doc)
from sam3m4.results.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]
TARGETS = load_targets(ROOT / "acceptance" / "targets.yaml")


def _row(preset: str, int4_mb: float, fp16_mb: float, xnn_ms: float, gflops: float = 10.0, int8_ratio: float = 0.5) -> dict:
    def case(backend, mode, mb, ms=None):
        return {"backend": backend, "mode": mode, "ok": True, "pte_mb": mb, "coverage_percent": 100.0,
                "coverage_kind": "NPU" if backend == "coreml" else "CPU", "image_p50_ms": ms,
                "track_fps": 1000 / ms if ms else None}
    return {"preset": preset, "gflops": gflops, "cases": [case("coreml", "int4", int4_mb), case("coreml", "fp16", fp16_mb),
                                                            case("xnnpack", "fp16", 60.0, xnn_ms),
                                                            dict(case("xnnpack", "int8_int4", 20.0, xnn_ms * int8_ratio),
                                                                 int8_mac_percent=95.0)]}


def test_summary_uses_the_fastest_xnnpack_case_and_same_run_ratios():
    s = summarise(_row("a", 10.0, 28.0, 100.0, gflops=10.0), matmul=200.0, reference_s=36.6)
    assert s["xnnpack_mode"] == "int8_int4" and s["xnnpack_ms"] == 50.0
    assert s["floor_ms"] == pytest.approx(50.0)  # 10 GFLOPs at 200 GFLOP/s
    assert s["flop_floor_ratio"] == pytest.approx(1.0) and s["speedup"] == pytest.approx(732.0)
    assert s["xnnpack_int8_ratio"] == pytest.approx(0.5)  # int8_int4 p50 / fp16-mode p50, same run
    assert all(ok for _, ok in judge(s, TARGETS).values())


def test_each_bench_target_can_fail():
    too_big = judge(summarise(_row("a", 12.5, 31.0, 50.0), 200.0, 36.6), TARGETS)
    assert too_big["bench_coreml_int4_mb"] == (12.5, False) and too_big["bench_coreml_fp16_mb"][1] is False
    slow = judge(summarise(_row("a", 10.0, 28.0, 80.0, int8_ratio=1.1), 200.0, 36.6), TARGETS)  # 457x, 1.6x floor
    assert slow["bench_speedup"][1] is False and slow["bench_flop_floor_ratio"][1] is False
    assert slow["bench_xnnpack_int8_speed_ratio"] == (pytest.approx(1.1), False)  # int8 that buys no speed
    unmeasured = judge(summarise(_row("a", 10.0, 28.0, 50.0), 200.0, None), TARGETS)
    assert unmeasured["bench_speedup"] == (None, None)  # --no-reference: not measured, not passed


def test_int8_speed_ratio_is_not_judged_without_int8_dot_products_and_the_mac_share_stands_in():
    from sam3m4.export.bench import NO_INT8_DOT

    row = _row("a", 10.0, 28.0, 80.0, int8_ratio=1.1)  # int8 no faster than fp32: what an AVX2-only host measures
    row["cases"][-1]["int8_mac_percent"] = 50.0
    s = summarise(row, 200.0, 36.6)
    assert judge(s, TARGETS, "avx512_vnni")["bench_xnnpack_int8_speed_ratio"] == (pytest.approx(1.1), False)
    assert judge(s, TARGETS, "asimddp i8mm")["bench_xnnpack_int8_speed_ratio"][1] is False
    verdicts = judge(s, TARGETS, "none (avx2 only)")
    assert verdicts["bench_xnnpack_int8_speed_ratio"] == (pytest.approx(1.1), None)  # never a FAIL for the host
    assert verdicts["xnnpack_int8_mac_share"] == (50.0, False)  # the graph's figure is judged on every host
    row.update(summary=s, verdicts=verdicts)
    table = markdown_table({"rows": [row], "best": "a", "reference": None, "matmul_gflops": 200.0, "threads": 2,
                            "runs": 5, "host": "h", "date": "d", "int8_isa": "none (avx2 only)",
                            "targets": {n: {"text": TARGETS[n].describe()} for n in verdicts}})
    assert f"| 1.10x | <= 0.6 x | {NO_INT8_DOT} |" in table and "| 50.0% | >= 90% | FAIL |" in table


def test_best_preset_passes_most_targets_then_is_fastest_and_readme_table_is_replaced(tmp_path):
    rows = [_row("big", 26.0, 51.0, 80.0), _row("small", 10.0, 28.0, 120.0), _row("fast", 10.0, 28.0, 90.0)]
    for r in rows:
        r["summary"] = summarise(r, 200.0, 36.6)
        r["verdicts"] = judge(r["summary"], TARGETS)
    assert best_preset(rows) == "fast"
    result = {"rows": rows, "best": "fast", "reference": {"seconds": 36.6, "params": 840e6, "input_px": 1008},
              "matmul_gflops": 200.0, "threads": 2, "runs": 50, "host": "2-core x86_64 Linux", "date": "2026-11-27",
              "int8_isa": "avx512_vnni",
              "targets": {n: {"text": TARGETS[n].describe()} for n in rows[0]["verdicts"]}}
    table = markdown_table(result)
    assert "| fast | coreml | int4 | 10.0 | 100.0% NPU | 10.00 | not measured¹ |" in table
    assert "| XNNPACK image path vs full SAM 3 (same run) | 813x | >= 500 x | pass |" in table
    assert "| XNNPACK int8_int4 image path p50 / fp32 (fp16 mode) p50, same run (CPU int8 dot products: " \
           "avx512_vnni) | 0.50x | <= 0.6 x | pass |" in table
    assert "| XNNPACK int8_int4 image path MACs in int8 kernels (lowered graph, any host) | 95.0% | >= 90% " \
           "| pass |" in table
    assert "backbone + FPN p50 ms" not in table  # no split measured: no split table
    rows[2]["cases"][2]["split_ms"] = {"backbone": 30.0, "text_encoder": 2.0, "decoder": 20.0, "mask_head": 5.0,
                                       "track_step": 60.0, "image_path": 90.0}
    split = markdown_table(result)
    assert "| fast | xnnpack | fp16 | 30.0 | 2.0 | 20.0 | 5.0 | 60.0 | 90.0 |" in split
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\nold\n{README_END}\ntail\n")
    update_doc(readme, table)
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{README_END}\ntail\n") and "| fast | xnnpack | fp16 |" in text
    readme.write_text("# no markers\n")
    with pytest.raises(Sam3m4Error, match="README.md: no '<!-- sam3m4 bench: start -->'"):
        update_doc(readme, table)


@pytest.mark.slow
@pytest.mark.xnnpack
def test_bench_exports_and_times_a_preset_through_the_cli(tmp_path, monkeypatch):
    from sam3m4.cli import main
    from sam3m4.results import ResultsStore

    monkeypatch.chdir(tmp_path)  # the results store goes to tmp_path/reports/
    out = tmp_path / "bench"
    rc = main(["bench", "--presets", "tiny", "--cases", "xnnpack:int8_int4", "--no-reference", "--runs", "3",
               "--out", str(out), "--run", "pytest_bench", "--threads", "1", "--no-kernels",
               "--targets", str(ROOT / "acceptance" / "targets.yaml")])
    assert rc == 0 and (out / "sam3m4_tiny_xnnpack_int8_int4.pte").is_file() and (out / "bench.json").is_file()
    recs = {(r.subject, r.metric): r for r in ResultsStore("pytest_bench").records()}
    assert recs[("tiny/xnnpack/int8_int4", "host_image_latency_ms")].value > 0
    assert recs[("tiny", "bench_speedup")].value is None  # --no-reference
    assert main(["bench", "--presets", "huge", "--no-reference"]) == 2  # one-line error, exit 2
