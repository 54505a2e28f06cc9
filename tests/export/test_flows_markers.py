"""Backends as data: each export flow declares its quantizer's settings (:mod:`sam3m4.quantize.backends`) and
brings its pytest marker (registered by ``conftest.py`` from the flows, not typed into ``pytest.ini``), and an
xfail that passes fails the run (``xfail_strict``).

    python -m pytest tests/export/test_flows_markers.py -q
"""

from __future__ import annotations

import configparser
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

from sam3m4.export import flows
from sam3m4.quantize import backends, convs

ROOT = Path(__file__).resolve().parents[2]


def _ini() -> configparser.SectionProxy:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "pytest.ini")
    return ini["pytest"]


def test_every_flow_marker_is_registered_and_none_is_typed_into_pytest_ini(pytestconfig):
    registered = {line.split(":", 1)[0].strip() for line in pytestconfig.getini("markers")}
    assert set(flows.FLOWS) <= registered
    typed = {line.split(":", 1)[0].strip() for line in _ini()["markers"].strip().splitlines()}
    assert typed and not typed & set(flows.FLOWS), f"backend markers typed into pytest.ini: {typed & set(flows.FLOWS)}"
    assert all(f.marker.startswith(f"{name}: ") for name, f in flows.FLOWS.items())


def test_pytest_ini_is_strict_about_markers_and_xfails():
    ini = _ini()
    assert "--strict-markers" in ini["addopts"].split() and ini["xfail_strict"].strip() == "true"


def test_each_flow_declares_its_quantizer_settings_and_the_host_simulation_reads_the_same():
    assert {n: f.quantizer_settings for n, f in flows.FLOWS.items()} == backends.QUANTIZERS
    for f in flows.FLOWS.values():  # a flow whose quantizer takes the convolutions names the modes' conv treatment
        conv_modes = {m.convs for name, m in flows.MODES.items() if f.support(name).supported} - {None}
        assert f.quantizer_settings.convs is None or f.quantizer_settings.convs in conv_modes, f.name
    assert convs.COREML_WEIGHT_CONFIG is backends.COREML_QUANTIZER.config  # coreml_compress_weights' default
    dynamic = backends.XNNPACK_QUANTIZER.config["is_dynamic"]
    for fn in (convs.xnnpack_conv_quantizer, convs.xnnpack_conv_names, convs.mark_xnnpack_convs, convs.pt2e_convs,
               convs.PT2EStudent.__init__):  # Stage 4 scores with the activations the flow lowers
        assert inspect.signature(fn).parameters["dynamic"].default is dynamic, fn.__qualname__


PROBE = '''
import pytest


@pytest.mark.coreml
@pytest.mark.qnn
@pytest.mark.xnnpack
def test_marked_with_every_flow():
    pass


@pytest.mark.xfail(reason="a known gap that is no longer there")
def test_an_xfail_that_passes():
    pass
'''


def test_a_session_knows_the_flow_markers_refuses_unknown_ones_and_fails_an_xpass(tmp_path):
    """A real pytest session with the project's conftest.py and pytest.ini (``--strict-markers``)."""
    for name in ("conftest.py", "pytest.ini"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "acceptance").mkdir()
    shutil.copy(ROOT / "acceptance" / "targets.yaml", tmp_path / "acceptance" / "targets.yaml")
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_unknown.py").write_text("import pytest\n\n\n@pytest.mark.notaflow\ndef test_x():\n    pass\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "--run", "probe", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    out = run("test_probe.py")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout and "XPASS(strict)" in out.stdout, out.stdout
    out = run("--collect-only", "-q", "test_unknown.py")
    assert out.returncode != 0 and "'notaflow' not found in `markers` configuration option" in out.stdout + out.stderr
