"""The stage table (:data:`sam3m4.pipeline.stages.STAGES`): each row's function is what the pipeline's command of
that stage runs, with the settings the row declares, and what the acceptance fixtures call to build their small
stages. The functions are replaced by recorders: nothing is trained, quantized or exported here."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from sam3m4.checkpoint import best_name
from sam3m4.cli import build_parser
from sam3m4.config import resolve_args
from sam3m4.pipeline.stages import DEFAULTS, STAGES, build_stages, load_config, paths, spec
from sam3m4.results import ResultsStore, schema

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())  # the project root


class Called(Exception):
    """Raised by a recorder in place of the stage function (the command stops there)."""


def _record(monkeypatch, key: str, calls: list, effect=None, stop: bool = False) -> None:
    """Replace row ``key``'s function in its module by one that appends ``(key, args, kwargs)`` to ``calls``."""
    module, _, name = spec(key).function.partition(":")
    module = importlib.import_module(module)

    @functools.wraps(getattr(module, name))  # its signature: loaders read the settings it takes from it
    def recorder(*args, **kwargs):
        calls.append((key, args, kwargs))
        if stop:
            raise Called(key)
        return effect(*args, **kwargs) if effect else None

    monkeypatch.setattr(module, name, recorder)


def test_every_row_names_a_function_its_settings_and_its_config():
    keys = [row.key for row in STAGES]
    assert len(keys) == len(set(keys))
    for row in STAGES:
        fn = row.load()
        assert callable(fn), row.key
        params = inspect.signature(fn).parameters
        for kw, key in row.settings.items():  # a keyword of the function, set by a key of the pipeline config
            assert kw in params and key in DEFAULTS, (row.key, kw, key)
        if row.config:
            settings = row.read_settings(ROOT / row.config_file(DEFAULTS, phase=1), ["data_root=d", "out_dir=o"]
                                         if row.key == "teacher-bootstrap" else [])
            assert isinstance(settings, dict) and settings, row.key
    with pytest.raises(KeyError, match="nope: not a stage"):
        spec("nope")


# the rows the acceptance fixtures build from, and a config whose values differ from every command-line default
FIXTURE_ROWS = ("data", "teacher-bootstrap", "phase", "quantize", "export", "export-extra")
ODD = ["synth_image_size=128", "synth_video_size=96", "synth_frames=8", "seed=3", "quant_num_val=7", "qat=never",
       "run=odd", "exports=[coreml:fp16]"]


@pytest.mark.parametrize("key", FIXTURE_ROWS)
def test_the_pipeline_command_of_a_stage_runs_its_table_function_with_its_settings(key, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config("configs/demo.yaml", ODD)
    row = spec(key)
    stages = row.stages(paths(cfg))
    assert stages and all(s in build_stages(cfg) for s in stages)
    for stage in stages:
        calls = []
        _record(monkeypatch, key, calls, stop=True)
        words = stage.argv[3:]  # after python -m sam3m4
        args = resolve_args(build_parser(words).parse_args(words))
        if key == "phase":
            args.resume, args.benchmark_cache = False, False
        with pytest.raises(Called):
            args.func(args)
        (_, called_args, kwargs), = calls
        for kw, value in row.kwargs(cfg).items():
            assert kwargs[kw] == value, (stage.name, kw)
        if key == "phase":  # the recipe got the stage's own YAML file with the command's key=value
            phase = int(stage.name[-1])
            overrides = [w for w in words if "=" in w] + [f"phase={phase}", f"device={cfg['device']}"]
            assert called_args[0] == row.read_settings(row.config_file(cfg, phase=phase), overrides)
        if key == "teacher-bootstrap":
            assert called_args[:2] == (cfg["data_root"], cfg["teacher"])


def _conftest():
    """acceptance/conftest.py as a module of its own (pytest imports it under another name when it collects it)."""
    spec_ = importlib.util.spec_from_file_location("acceptance_conftest_under_test", ROOT / "acceptance" / "conftest.py")
    module = importlib.util.module_from_spec(spec_)
    sys.modules[spec_.name] = module
    spec_.loader.exec_module(module)
    return module


def _checkpoint(cfg: dict) -> None:
    """What a recipe run leaves that the fixtures look for: a Phase 2 checkpoint and its best."""
    ckpts = Path(cfg["checkpoint_dir"])
    ckpts.mkdir(parents=True, exist_ok=True)
    (ckpts / "phase2_epoch1_step1.pt").write_bytes(b"")
    (ckpts / best_name(2)).write_bytes(b"")


def test_the_acceptance_fixtures_build_their_stages_with_the_table_functions(tmp_path, monkeypatch):
    conftest = _conftest()
    calls = []
    for key in ("data", "teacher-bootstrap", "phase", "quantize", "export"):  # export-extra: export's function
        _record(monkeypatch, key, calls, effect=_checkpoint if key == "phase" else None)
    monkeypatch.setattr(importlib.import_module("sam3m4.distill.cache"), "save_random_teacher",
                        lambda out, **kw: Path(out))

    stage3 = conftest._build_embedded_stage3(tmp_path / schema.STAGE3)
    assert [c[0] for c in calls] == ["data", "teacher-bootstrap", "phase", "phase"]
    data, boot, phase1, phase2 = calls
    assert data[1] == (stage3.data_root,) and data[2] == {**spec("data").kwargs(DEFAULTS), "progress": False}
    assert boot[1] == (str(stage3.data_root), stage3.teacher)
    assert [c[1][0]["checkpoint_dir"] for c in (phase1, phase2)] == [str(tmp_path / schema.STAGE3 / "checkpoints")] * 2
    assert phase1[1][0] != phase2[1][0]  # Phase 1's config, then Phase 2's

    calls.clear()
    out = tmp_path / schema.STAGE4
    assert conftest._build_small_stage4(out) == out / "quantized"
    assert [c[0] for c in calls] == ["phase", "quantize"]
    (_, args, kwargs) = calls[1]
    assert args == (out / "checkpoints" / "phase2_epoch1_step1.pt",)
    assert {k: kwargs[k] for k in conftest.SMALL_STAGE4_QUANTIZE} == conftest.SMALL_STAGE4_QUANTIZE
    assert kwargs["out_dir"] == out / "quantized" and isinstance(kwargs["store"], ResultsStore)

    calls.clear()
    monkeypatch.setattr(conftest, "CACHE", tmp_path / "cache")  # the export's lock
    options = {"--stage5-quantized": str(out / "quantized"), "--stage4-num-val": 5, "--stage4-data": None}
    config = type("Config", (), {"getoption": staticmethod(options.get)})
    store = ResultsStore("table", root=tmp_path / "reports")
    conftest.stage5_export.__wrapped__(config, store)("xnnpack", "int8_int4")
    assert [c[0] for c in calls] == ["export"]
    (_, args, kwargs) = calls[0]
    assert args == ("xnnpack", "int8_int4") and kwargs["quantized"] == out / "quantized" and kwargs["num_val"] == 5
