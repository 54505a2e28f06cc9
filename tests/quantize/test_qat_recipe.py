"""The QAT recipe's settings: its own keys (``configs/qat.yaml``, typed and range-checked by its loader) and the
Phase 2 keys it takes from the checkpoint; it reads the teacher cache through the cache module, not the
distillation recipe.

    python -m pytest tests/quantize/test_qat_recipe.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from sam3m4.distill import cache_pass
from sam3m4.distill.settings import DEFAULTS as PHASE2_DEFAULTS
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.quantize import qat_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_qat_yaml_holds_the_recipes_defaults_and_opens_with_its_command():
    path = ROOT / "configs" / "qat.yaml"
    assert qat_recipe.load_config(path) == qat_recipe.DEFAULTS
    assert path.read_text().startswith("# sam3m4 quantize --mode qat_")


def test_stage4_takes_the_qat_file_and_its_flags_win(tmp_path, monkeypatch):
    """``sam3m4 quantize --qat-config FILE`` hands Stage 4 the file's settings; ``--qat-steps / --qat-lr`` win over
    it; without either, the recipe's defaults (one place for them). ``build_mode`` passes them to the recipe."""
    import argparse
    from types import SimpleNamespace

    from sam3m4.config import resolve_args
    from sam3m4.quantize import cli, pipeline, stage

    seen = {}
    monkeypatch.setattr(stage, "quantize_compare", lambda ckpt, **kw: seen.update(kw) or _Printed())
    (tmp_path / "qat.yaml").write_text("steps: 7\nbatch_size: 3\n")
    for argv, want in ((["--qat-config", str(tmp_path / "qat.yaml"), "--qat-lr", "0.5"],
                        {**qat_recipe.DEFAULTS, "steps": 7, "batch_size": 3, "lr": 0.5}),
                       ([], qat_recipe.DEFAULTS)):
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        assert cli.run(resolve_args(parser.parse_args(["--mode", "compare", *argv]))) == 0
        assert qat_recipe.settings(seen["qat_settings"], steps=seen["qat_steps"], lr=seen["qat_lr"]) == want

    got = {}
    monkeypatch.setattr(pipeline, "Checkpoint", SimpleNamespace(open=lambda ck: ck))
    monkeypatch.setattr(pipeline, "load_source", lambda ck: (torch.nn.Linear(2, 2), "student"))
    monkeypatch.setattr(pipeline, "qat_finetune", lambda src, mode, **kw: got.update(kw) or (None, {}))
    pipeline.build_mode(object(), "qat_int4", qat_steps=9, phase2=object(), qat_settings={"batch_size": 3})
    assert {k: got[k] for k in qat_recipe.DEFAULTS} == {**qat_recipe.DEFAULTS, "steps": 9, "batch_size": 3}
    with pytest.raises(ConfigError, match="QAT settings: epochs: unknown key"):
        qat_recipe.settings({"epochs": 2})


class _Printed:
    table = summary = ""


@pytest.mark.parametrize("override, message", [
    ("steps=0", r"override 'steps=0': steps: must be >= 1, got 0"),
    ("batch_size=0", r"batch_size: must be >= 1"),
    ("lr=0", r"override 'lr=0': lr: must be > 0, got 0.0"),
    ("warmup_steps=-1", r"warmup_steps: must be >= 0"),
    ("steps=ten", r"steps: expected int, got str 'ten'"),
    ("epochs=3", r"override 'epochs=3': epochs: unknown key"),  # a Phase 2 key: it comes from the checkpoint
])
def test_bad_qat_settings_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        qat_recipe.load_config(None, [override])


def test_a_bad_key_in_a_qat_file_names_the_file(tmp_path):
    bad = tmp_path / "qat.yaml"
    bad.write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=rf"{bad}: learning_rate: unknown key"):
        qat_recipe.load_config(bad)
    assert qat_recipe.load_config(None, ["steps=120", "lr=5e-5"])["lr"] == 5e-5  # YAML 1.1 reads 5e-5 as text


def test_qat_config_takes_the_phase2_run_and_fills_what_an_older_checkpoint_lacks(tmp_path):
    stored = {k: v for k, v in PHASE2_DEFAULTS.items() if k != "w_gt_score"}  # a key added after it was written
    stored.update(data_root="data/elsewhere", grad_accum=3, w_mask_dice=7.0, not_a_setting=1)
    ckpt = tmp_path / "phase2.pt"
    torch.save({"model": {}, "step": 9, "epoch": 1, "phase": 2, "config": stored}, ckpt)
    cfg = qat_recipe.qat_config(ckpt, lr=2e-4)
    assert (cfg["data_root"], cfg["grad_accum"], cfg["w_mask_dice"]) == ("data/elsewhere", 3, 7.0)
    assert cfg["w_gt_score"] == PHASE2_DEFAULTS["w_gt_score"] and "not_a_setting" not in cfg
    assert (cfg["phase"], cfg["init_from"], cfg["lr"]) == (2, str(ckpt), 2e-4)
    torch.save({"model": {}, "step": 9, "epoch": 1, "phase": 2}, ckpt)
    with pytest.raises(DataFormatError, match=r"phase2.pt: config: missing"):
        qat_recipe.qat_config(ckpt)


def test_the_qat_recipe_reads_the_cache_module_not_the_distillation_recipe():
    tree = ast.parse((ROOT / "sam3m4" / "quantize" / "qat_recipe.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not any(m.startswith("sam3m4.distill.recipe") or m == "sam3m4.distill.recipe" for m in imported)
    assert qat_recipe.ensure_cache is cache_pass.ensure_cache


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_qat_runs_on_the_phase2_cache_without_the_teacher_and_converts(tmp_path, tiny_teacher_kwargs, monkeypatch):
    """A tiny Phase 2 run fills the cache; QAT then trains on it (the teacher is never loaded), its loss is
    finite and the result has torchao's quantized Linear weights."""
    from sam3m4.distill import cache as feature_cache, recipe

    teacher = feature_cache.save_random_teacher(tmp_path / "teacher", **tiny_teacher_kwargs)
    cfg = recipe.load_config(None, [
        f"data_root={ROOT / 'fixtures' / 'synth'}", f"teacher={teacher}", f"cache_dir={tmp_path / 'cache'}",
        "image_size=64", "threads=1", "progress=false", "cache_topk=4", "train_limit=8", "val_limit=4",
        "batch_size=4", "epochs=1", "eval_every=0", "vis_pairs=0", "warmup_steps=1",
        f"checkpoint_dir={tmp_path / 'ckpt'}", f"log_dir={tmp_path / 'logs'}"])
    ckpt = recipe.main(cfg)["checkpoint"]

    def no_teacher(*a, **kw):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(cache_pass, "load_teacher", no_teacher)
    settings = qat_recipe.load_config(ROOT / "configs" / "qat.yaml", ["steps=3", "batch_size=4", "warmup_steps=1"])
    model, info = qat_recipe.qat_finetune(ckpt, "qat_int8_int4", progress=False, **settings)
    assert info["steps"] == 3 and info["batch_size"] == 4 and info["lr"] == qat_recipe.DEFAULTS["lr"]
    assert all(map(torch.isfinite, map(torch.tensor, (info["first_loss"], info["final_loss"]))))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert any(type(m.weight).__name__ != "Parameter" and type(m.weight) is not torch.Tensor for m in linear)
    assert not model.training
