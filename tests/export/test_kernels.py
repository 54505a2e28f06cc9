"""Single-layer int8 / fp32 ratios (``sam3m4.export.kernels``) and the CPU's int8 dot-product instructions."""

from __future__ import annotations

import functools

import pytest
from torch import nn

from sam3m4.env import host_summary, int8_dot_isa, vector_isa

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 sse4_1 avx avx2 fma\n"
VNNI = "processor\t: 0\nflags\t\t: fpu sse4_1 avx2 avx512f avx512bw avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sha512 i8mm bf16\n"
SMALL = (("1x1 conv", lambda: nn.Conv2d(32, 64, 1), (1, 32, 16, 16)),
         ("depthwise", lambda: nn.Conv2d(32, 32, 3, padding=1, groups=32), (1, 32, 16, 16)),
         ("linear", lambda: nn.Linear(64, 128), (1, 16, 64)))


@pytest.mark.parametrize("text, expected", [(AVX2_ONLY, "none (avx2 only)"), (VNNI, "avx512_vnni"),
                                            (ARM, "asimddp i8mm"), ("processor\t: 0\n", "none")])
def test_int8_dot_isa_reads_the_cpu_flags(text, expected):
    assert int8_dot_isa(text) == expected


@pytest.mark.xnnpack
def test_kernel_ratios_time_every_scheme_against_fp32_in_one_run():
    from sam3m4.export.kernels import kernel_ratios, kernel_table

    rows = kernel_ratios(threads=1, runs=2, kernels=SMALL)
    got = {(r["kernel"], r["scheme"].split(" act")[0], r["shipped"]) for r in rows}
    # convs: static (what int8_int4 ships, sam3m4.quantize.xnnpack_int8) and dynamic; depthwise: static only
    # (shipped); Linear: 8da8w (shipped) and 8da4w
    assert got == {("1x1 conv", "int8 dynamic", False), ("1x1 conv", "int8 static", True),
                   ("depthwise", "int8 static", True), ("linear", "int8 dynamic", True),
                   ("linear", "int8 dynamic", False)}
    assert {r["scheme"].split(",")[0] for r in rows if r["kernel"] == "linear" and r["shipped"]} == {
        "int8 dynamic act x int8 weights per channel"}
    assert all(r["fp32_ms"] > 0 and r["int8_ms"] > 0 and r["ratio"] == pytest.approx(r["int8_ms"] / r["fp32_ms"])
               for r in rows)
    table = kernel_table(rows, "none (avx2 only)", threads=1)
    assert table.count("\n| ") == len(rows) and "none (avx2 only)" in table


@pytest.mark.xnnpack
def test_bench_kernels_only_prints_and_records_the_ratios(tmp_path, monkeypatch, capsys):
    from sam3m4.cli import main
    from sam3m4.export import bench, kernels
    from sam3m4.results import ResultsStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "kernel_ratios", functools.partial(kernels.kernel_ratios, kernels=SMALL[:1]))
    assert main(["bench", "--kernels-only", "--runs", "2", "--threads", "1", "--run", "pytest_kernels"]) == 0
    assert "int8 dot-product instructions" in capsys.readouterr().out
    recs = [r for r in ResultsStore("pytest_kernels").records() if r.metric == "int8_fp32_ratio"]
    assert len(recs) == 2 and all(r.subject == "kernel: 1x1 conv" and r.value > 0 for r in recs)


def test_the_environment_line_names_the_cpu_and_its_vector_instruction_sets():
    """Float rounding differs between CPU families (AVX-512 / AMX vs AVX2 kernels): every run's environment
    line names the CPU model and its instruction sets, so two runs' numbers can be compared honestly."""
    xeon = "processor: 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8 amx_bf16\n"
    assert vector_isa(xeon) == "sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni amx_bf16 amx_int8"
    assert vector_isa("flags: fpu sse4_2 avx avx2 fma\n") == "sse4_2 avx avx2 fma"
    assert vector_isa("Features: fp asimd asimddp i8mm sve\n") == "asimd asimddp i8mm sve"
    assert vector_isa("model name: x\n") == "none"
    line = host_summary()
    assert ", ISA " in line and line.split(", ISA ")[1].strip()
