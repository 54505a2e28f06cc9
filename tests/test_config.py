"""The one flat-YAML config loader (sam3m4.config): typed overrides, one-line errors naming file and key, and the
``--config`` wiring of the flag-based CLIs (flags > key=value > file > defaults)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sam3m4.config import add_config_arguments, load_config, read_yaml, resolve_args
from sam3m4.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"steps": 10, "lr": 1e-3, "hflip": True, "name": "demo", "levels": [1, 2], "sizes": {}, "limit": None}


def _file(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_overrides_are_typed_by_the_defaults(tmp_path):
    path = _file(tmp_path, "steps: 20\nlr: 5e-4\nhflip: 0\nname:\n")
    cfg = load_config(path, ["steps=30", "lr=1", "hflip=true", "name=007", "levels=[3]", "sizes={a: 1}",
                             "limit=[x]"], DEFAULTS)
    assert cfg == {"steps": 30, "lr": 1.0, "hflip": True, "name": "007", "levels": [3], "sizes": {"a": 1},
                   "limit": ["x"]}
    assert isinstance(cfg["lr"], float)
    assert cfg.where("steps") == "override 'steps=30'" and cfg.where("levels") == "override 'levels=[3]'"
    assert load_config(path, [], DEFAULTS)["lr"] == 5e-4  # YAML 1.1 reads 5e-4 as text: still a float
    assert load_config(path, [], DEFAULTS)["name"] == ""  # empty value -> ""
    assert load_config(None, ["levels=", "hflip=1"], DEFAULTS)["levels"] == []


def test_dataclass_defaults_and_declared_types():
    @dataclass
    class Recipe:
        threads: int = 2
        tags: list = field(default_factory=list)

    cfg = load_config(None, ["threads=null"], Recipe(), types={"threads": (int, None)})
    assert cfg == {"threads": None, "tags": []}
    with pytest.raises(ConfigError, match=r"^override 'threads=x': threads: expected int or null, got str 'x'$"):
        load_config(None, ["threads=x"], Recipe(), types={"threads": (int, None)})


@pytest.mark.parametrize("text, overrides, message", [
    ("stepz: 3\n", [], r"recipe\.yaml: stepz: unknown key \(did you mean 'steps'\?\)$"),
    ("", ["learning_rate=1"], r"^override 'learning_rate=1': learning_rate: unknown key$"),
    ("steps: 1.5\n", [], r"recipe\.yaml: steps: expected int, got float 1\.5$"),
    ("", ["steps=abc"], r"^override 'steps=abc': steps: expected int, got str 'abc'$"),
    ("", ["steps=true"], r"steps: expected int, got bool True$"),
    ("", ["hflip=3"], r"^override 'hflip=3': hflip: expected bool, got int 3$"),
    ("", ["lr=fast"], r"lr: expected float, got str 'fast'$"),
    ("", ["levels=[1"], r"^override 'levels=\[1': levels: expected list, got str '\[1'$"),
    ("", ["steps"], r"^override 'steps': expected key=value$"),
    ("- a\n- b\n", [], r"recipe\.yaml: top level must be a mapping"),
    ("a: [1\n", [], r"recipe\.yaml: cannot read config"),
])
def test_bad_input_is_one_line_naming_file_and_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_file(tmp_path, text), overrides, DEFAULTS)
    assert "\n" not in str(err.value)


def test_missing_file_and_required_key(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read config"):
        read_yaml(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: name: missing key"):
        load_config(_file(tmp_path, "steps: 1\n"), [], DEFAULTS, required=("name",))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=("a", "b"))
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("out/q"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--qat", choices=("auto", "never"), default="auto")
    parser.add_argument("--no-progress", action="store_true")
    add_config_arguments(parser, "configs/x.yaml")
    return parser


def test_flags_win_over_overrides_over_the_file_over_defaults(tmp_path):
    path = _file(tmp_path, "num_val: 50\nout: elsewhere\nno_progress: true\n")
    args = resolve_args(_parser().parse_args(["--mode", "a", "--config", str(path), "qat=never"]))
    assert (args.num_val, args.out, args.data, args.qat, args.no_progress) == (50, Path("elsewhere"), None, "never", True)
    args = resolve_args(_parser().parse_args(["--mode", "a", "--config", str(path), "--num-val", "7", "num_val=9"]))
    assert args.num_val == 7
    assert resolve_args(_parser().parse_args(["--mode", "a", "--config", str(path), "num_val=9"])).num_val == 9
    plain = resolve_args(_parser().parse_args(["--mode", "b"]))  # no file: today's defaults
    assert vars(plain) == {"mode": "b", "num_val": 200, "out": Path("out/q"), "data": None, "qat": "auto",
                           "no_progress": False, "config": None, "overrides": []}
    built = argparse.Namespace(mode="a", num_val=3)  # code calling run(): left as it is
    assert resolve_args(built) is built


def test_cli_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe\.yaml: qat: 'sometimes' is not one of auto, never"):
        resolve_args(_parser().parse_args(["--mode", "a", "--config", str(_file(tmp_path, "qat: sometimes\n"))]))
    with pytest.raises(ConfigError, match=r"recipe\.yaml: mode: unknown key"):  # required flags stay flags
        resolve_args(_parser().parse_args(["--mode", "a", "--config", str(_file(tmp_path, "mode: b\n"))]))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_reads_as_a_flat_mapping(name):
    data = read_yaml(ROOT / "configs" / name)
    assert data and all(isinstance(k, str) for k in data)
    assert (ROOT / "configs" / name).read_text().startswith("#")  # opens with the command that runs it


def _subparser(module, *path):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("config, command, argv", [
    ("distill_video.yaml", ("distill", "video"), []),
    ("quantize.yaml", ("quantize",), ["--mode", "compare"]),
    ("export.yaml", ("export",), ["--backend", "xnnpack", "--mode", "int4"]),
])
def test_flag_configs_hold_the_commands_defaults(config, command, argv):
    """configs/{distill_video,quantize,export}.yaml change nothing: with them, every option is its default."""
    import importlib

    module = importlib.import_module(f"sam3m4.{command[0]}.cli")
    parser = _subparser(module, *command[1:])
    plain = vars(resolve_args(parser.parse_args(argv)))
    with_file = vars(resolve_args(parser.parse_args([*argv, "--config", str(ROOT / "configs" / config)])))
    assert set(read_yaml(ROOT / "configs" / config)) == set(plain) - {"config", "overrides", "func", *(
        a.dest for a in parser._actions if a.required)}
    assert {k: v for k, v in with_file.items() if k != "config"} == {k: v for k, v in plain.items() if k != "config"}


def test_every_shipped_recipe_config_loads_through_its_recipe():
    """torchtune's habit: each shipped YAML is checked by the loader of the recipe that reads it."""
    from sam3m4.distill import recipe
    from sam3m4.pipeline.stages import load_config as load_pipeline
    from sam3m4.quantize.qat_recipe import DEFAULTS as qat_defaults, load_config as load_qat
    from sam3m4.teacher.bootstrap import load_config as load_bootstrap

    configs = ROOT / "configs"
    checked = {"distill_video.yaml", "quantize.yaml", "export.yaml"}  # test_flag_configs_hold_the_commands_defaults
    assert load_bootstrap(configs / "teacher_bootstrap.yaml")["max_steps"] > 0
    checked.add("teacher_bootstrap.yaml")
    for phase in (1, 2):
        assert recipe.load_config(configs / f"distill_phase{phase}.yaml")["phase"] == phase
        checked.add(f"distill_phase{phase}.yaml")
    for name in ("demo.yaml", "m4pro.yaml", "rehearsal.yaml"):
        assert load_pipeline(configs / name)["run"]
        checked.add(name)
    assert load_qat(configs / "qat.yaml") == qat_defaults  # the QAT recipe's own settings, its defaults
    checked.add("qat.yaml")
    assert checked == {p.name for p in configs.glob("*.yaml")}, "a new config needs its loader here"
