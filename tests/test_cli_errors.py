"""Bad input on the command line is one line, ``sam3m4: error: <file or flag>: <field>: <problem>``, exit 2.

Each case feeds one bad argument or one broken file to ``sam3m4.cli.main`` (in process, from an empty
working folder) and checks the exit status, that stderr ends in exactly one ``sam3m4: error:`` line (never
"internal error" or a traceback) and that the line names what is wrong. Checks that need no model come before
any loading, so most cases take milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sam3m4.cli import main
from sam3m4.checkpoint import load_checkpoint, save_checkpoint
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.models import build_student

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "fixtures" / "synth"
BOOTSTRAP_YAML = ROOT / "configs" / "teacher_bootstrap.yaml"
PIPELINE_YAML = ROOT / "configs" / "demo.yaml"
DISTILL_YAML = ROOT / "configs" / "distill_phase2.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_teacher_kwargs):
    """Good and broken inputs, built once: student checkpoints, teacher folders, a quantized folder, images."""
    from sam3m4.distill.cache import save_random_teacher
    from sam3m4.quantize.modes import apply_mode
    from sam3m4.quantize.storage import save_quantized

    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    student = build_student("tiny")
    state = student.state_dict()
    f = {"ckpt": save_checkpoint(d / "good", phase=2, epoch=0, step=1, state={"model": state, "preset": "tiny"})["path"]}
    f["ckpt_config_str"] = save_checkpoint(d / "cfg", phase=2, epoch=0, step=1,
                                           state={"model": state, "preset": "tiny", "config": "data/synth"})["path"]
    wrong = dict(state, **{"text_encoder.pos_embedding": torch.zeros(33, 64)})  # the preset has (32, 64)
    f["ckpt_shape"] = save_checkpoint(d / "shape", phase=2, epoch=0, step=1,
                                      state={"model": wrong, "preset": "tiny"})["path"]
    f["ckpt_corrupt"] = d / "corrupt.pt"
    f["ckpt_corrupt"].write_bytes(f["ckpt"].read_bytes()[:200])

    teacher = save_random_teacher(d / "teacher", **tiny_teacher_kwargs)
    f["teacher_shape"] = _copy_dir(teacher, d / "teacher_shape")
    weights = load_file(str(f["teacher_shape"] / "model.safetensors"))
    weights["detr_decoder.box_head.layer1.weight"] = torch.zeros(33, 32)  # hidden_size 32: (32, 32)
    save_file(weights, str(f["teacher_shape"] / "model.safetensors"), metadata={"format": "pt"})
    f["teacher_pickled"] = _copy_dir(teacher, d / "teacher_pickled")
    (f["teacher_pickled"] / "model.safetensors").unlink()
    (f["teacher_pickled"] / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")  # never opened

    f["quantized"] = d / "quantized"
    save_quantized(apply_mode(build_student("tiny"), "fp16"), f["quantized"] / "fp16", mode="fp16", preset="tiny")
    f["quantized_shape"] = d / "quantized_shape"
    _copy_dir(f["quantized"] / "fp16", f["quantized_shape"] / "fp16")
    q = f["quantized_shape"] / "fp16" / "model.safetensors"
    qw = load_file(str(q))
    with safe_open(str(q), "pt") as fh:
        meta = fh.metadata()  # torchao's tensor description (the fp16 mode's int8 token table) must survive
    qw["text_encoder.pos_embedding"] = torch.zeros(31, 64, dtype=torch.float16)
    save_file(qw, str(q), metadata=meta)

    f["quantized_renamed"] = d / "quantized_renamed"
    _copy_dir(f["quantized"] / "fp16", f["quantized_renamed"] / "int4")  # an fp16 model in the int4 folder
    f["image"] = next((SYNTH / "saco_image" / "images").rglob("*.jpg"))
    f["not_image"] = d / "notes.png"
    f["not_image"].write_text("not an image\n")
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("x\n")
    return f


def _copy_dir(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _fail(argv: list[str], capsys) -> str:
    """Run ``sam3m4 <argv>``; assert exit 2 and one ``sam3m4: error:`` line at the end; return that line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("sam3m4")]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("sam3m4: error: "), err
    assert err.strip().splitlines()[-1] == lines[0] and "Traceback" not in err, err
    return lines[0]


# (id, argv with {placeholders} for the files fixture, the text the one line must contain)
CASES = [
    # quantize
    ("quantize-config-str", "quantize --mode fp16 --ckpt {ckpt_config_str} --data {synth}",
     "cfg/phase2_epoch0_step1.pt: config: expected dict, got str"),
    ("quantize-num-val-0", "quantize --mode fp16 --ckpt {ckpt} --num-val 0", "--num-val 0: must be >= 1"),
    ("quantize-num-val-neg", "quantize --mode fp16 --ckpt {ckpt} --num-val -5", "--num-val -5: must be >= 1"),
    ("quantize-qat-steps-0", "quantize --mode qat_int4 --ckpt {ckpt} --qat-steps 0", "--qat-steps 0: must be >= 1"),
    ("quantize-qat-lr-0", "quantize --mode qat_int4 --ckpt {ckpt} --qat-lr 0", "--qat-lr 0.0: must be a positive"),
    ("quantize-qat-lr-nan", "quantize --mode qat_int4 --ckpt {ckpt} --qat-lr nan", "--qat-lr nan: must be a positive"),
    ("quantize-runs-0", "quantize --mode fp16 --ckpt {ckpt} --runs 0", "--runs 0: must be >= 1"),
    ("quantize-threads-neg", "quantize --mode fp16 --ckpt {ckpt} --threads -2", "--threads -2: must be >= 0"),
    ("quantize-run-name", "quantize --mode fp16 --ckpt {ckpt} --run ../x", "--run: '../x' is not a valid run name"),
    ("quantize-ckpt-missing", "quantize --mode fp16 --ckpt no/such.pt", "--ckpt no/such.pt: no such checkpoint"),
    ("quantize-data-missing", "quantize --mode fp16 --ckpt {ckpt} --data no/such", "--data no/such: no such folder"),
    ("quantize-out-file", "quantize --mode fp16 --ckpt {ckpt} --out {a_file}", "a_file: exists and is not a folder"),
    ("quantize-ckpt-shape", "quantize --mode fp16 --ckpt {ckpt_shape} --data {synth}",
     "model.text_encoder.pos_embedding: expected shape (32, 64), found (33, 64)"),
    ("quantize-ckpt-corrupt", "quantize --mode fp16 --ckpt {ckpt_corrupt} --data {synth}",
     "corrupt.pt: corrupt or truncated checkpoint"),
    # predict
    ("predict-threshold-5", "predict --ckpt {ckpt} --image {image} --prompt cat --out o --threshold 5",
     "--threshold 5.0: must be in [0, 1]"),
    ("predict-threshold-neg", "predict --ckpt {ckpt} --image {image} --prompt cat --out o --threshold -0.1",
     "--threshold -0.1: must be in [0, 1]"),
    ("predict-threshold-nan", "predict --ckpt {ckpt} --image {image} --prompt cat --out o --threshold nan",
     "--threshold nan: must be in [0, 1]"),
    ("predict-prompt-empty", ["predict", "--ckpt", "{ckpt}", "--image", "{image}", "--prompt", "", "--out", "o"],
     "--prompt: empty"),
    ("predict-prompt-blank", ["predict", "--ckpt", "{ckpt}", "--image", "{image}", "--prompt", "  \t", "--out", "o"],
     "--prompt: empty"),
    ("predict-image-missing", "predict --ckpt {ckpt} --image {image} nope.jpg --prompt cat --out o",
     "--image nope.jpg: no such file"),
    ("predict-image-folder", "predict --ckpt {ckpt} --image {synth} --prompt cat --out o", "(a folder)"),
    ("predict-not-image", "predict --ckpt {ckpt} --image {not_image} --prompt cat --out o",
     "notes.png: not an image PIL can decode"),
    ("predict-device", "predict --ckpt {ckpt} --image {image} --prompt cat --out o --device banana",
     "--device 'banana': not a device"),
    ("predict-out-file", "predict --ckpt {ckpt} --image {image} --prompt cat --out {a_file}",
     "a_file: exists and is not a folder"),
    ("predict-ckpt-shape", "predict --ckpt {ckpt_shape} --image {image} --prompt cat --out o",
     "shape/phase2_epoch0_step1.pt: model.text_encoder.pos_embedding: expected shape (32, 64), found (33, 64)"),
    ("predict-ckpt-config-str", "predict --ckpt {ckpt_config_str} --image {image} --prompt cat --out o",
     "config: expected dict, got str"),
    # eval
    ("eval-student-no-ckpt", "eval --model student --data {synth}", "--ckpt: required for --model student"),
    ("eval-student-ckpt-missing", "eval --model student --ckpt no.pt --data {synth}", "--ckpt no.pt: no such"),
    ("eval-student-ckpt-corrupt", "eval --model student --ckpt {ckpt_corrupt} --data {synth}",
     "corrupt.pt: corrupt or truncated checkpoint"),
    ("eval-student-ckpt-shape", "eval --model student --ckpt {ckpt_shape} --data {synth}",
     "model.text_encoder.pos_embedding: expected shape (32, 64), found (33, 64)"),
    ("eval-num-val-0", "eval --model gt --data {synth} --num-val 0", "--num-val 0: must be >= 1"),
    ("eval-threshold", "eval --model gt --data {synth} --threshold 2", "--threshold 2.0: must be in [0, 1]"),
    ("eval-data-missing", "eval --model gt --data no/such", "--data no/such: no such folder"),
    ("eval-teacher-missing", "eval --model teacher --ckpt ./no/such --data {synth}", "no such weights directory"),
    ("eval-teacher-not-weights", "eval --model teacher --ckpt {synth} --data {synth}", "config.json: missing"),
    ("eval-teacher-pickled", "eval --model teacher --ckpt {teacher_pickled} --data {synth}",
     "teacher_pickled/pytorch_model.bin: pickled PyTorch weights are refused"),
    ("eval-teacher-shape", "eval --model teacher --ckpt {teacher_shape} --data {synth}",
     "model.safetensors: detr_decoder.box_head.layer1.weight: expected shape (32, 32) (config.json), found (33, 32)"),
    # export
    ("export-quantized-missing", "export --backend xnnpack --mode fp16 --quantized no/such",
     "--quantized no/such: no such folder"),
    ("export-quantized-no-mode", "export --backend xnnpack --mode int4 --quantized {quantized}",
     "quantized: has no int4/ folder"),
    ("export-runs-0", "export --backend xnnpack --mode fp16 --quantized {quantized} --runs 0", "--runs 0: must be"),
    ("export-name", "export --backend xnnpack --mode fp16 --quantized {quantized} --name a/b", "--name 'a/b': must"),
    ("export-ckpt-missing", "export --backend xnnpack --mode fp16 --ckpt no.pt", "--ckpt no.pt: no such checkpoint"),
    ("export-quantized-shape", "export --backend xnnpack --mode fp16 --quantized {quantized_shape}",
     "fp16/model.safetensors: weights.text_encoder.pos_embedding: expected shape (32, 64), found (31, 64)"),
    ("export-quantized-mode", "export --backend xnnpack --mode int4 --quantized {quantized_renamed}",
     "int4/quantized.json: mode: 'fp16', but --mode is 'int4'"),
    ("export-chosen-no-decision", "export --backend xnnpack --mode chosen --quantized {quantized}",
     "quantized/decision.json: no such file (Stage 4 writes it"),
    ("export-num-val-0", "export --backend xnnpack --mode fp16 --quantized {quantized} --num-val 0",
     "--num-val 0: must be >= 1"),
    ("export-shipped-not-decided", "export --backend xnnpack --mode fp16 --quantized {quantized} --shipped decision",
     "quantized/decision.json: no such file"),
    # config overrides: checked before any data is read (data_root does not exist in the empty folder)
    ("bootstrap-type", "teacher bootstrap --config {bootstrap} max_steps=abc",
     "override 'max_steps=abc': max_steps: expected int, got str 'abc'"),
    ("bootstrap-unknown", "teacher bootstrap --config {bootstrap} max_step=10", "max_step: unknown key"),
    ("bootstrap-negative", "teacher bootstrap --config {bootstrap} lr=-1", "override 'lr=-1': lr: must be > 0"),
    ("bootstrap-bool", "teacher bootstrap --config {bootstrap} hflip=3", "hflip: expected bool, got int 3"),
    ("bootstrap-zero-steps", "teacher bootstrap --config {bootstrap} max_steps=0", "max_steps: must be > 0, got 0"),
    ("bootstrap-no-equals", "teacher bootstrap --config {bootstrap} max_steps", "'max_steps': expected key=value"),
    ("teacher-video-steps", "teacher video --data {synth} --steps -1", "--steps -1: must be >= 0"),
    ("teacher-video-lr", "teacher video --data {synth} --lr 0", "--lr 0.0: must be a positive number"),
    ("teacher-video-data", "teacher video --data no/such", "--data no/such: no saco_video/train.json"),
    ("distill-yaml", "distill phase2 --config {distill} epochs=[1", "override 'epochs=[1': epochs: expected int"),
    ("pipeline-type", "pipeline --config {pipeline} --list video_steps=abc",
     "override 'video_steps=abc': video_steps: expected int"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(argv, expected, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the run lock and any reports/ would land here
    names = {k: str(v) for k, v in files.items()} | {"synth": str(SYNTH), "bootstrap": str(BOOTSTRAP_YAML),
                                                       "pipeline": str(PIPELINE_YAML), "distill": str(DISTILL_YAML)}
    argv = argv.split() if isinstance(argv, str) else argv
    line = _fail([a.format(**names) for a in argv], capsys)
    assert expected in line


def test_bootstrap_checks_every_key_of_the_shipped_config():
    from sam3m4.teacher.bootstrap import load_config

    cfg = load_config(BOOTSTRAP_YAML, ["threads=null", "time_budget_s=60", "loss_cls=3"])
    assert cfg["threads"] is None and cfg["time_budget_s"] == 60 and cfg["loss_cls"] == 3


def test_checkpoint_entries_of_the_wrong_type_name_the_key(files, tmp_path):
    state = load_checkpoint(files["ckpt"])
    for key, value, want in (("config", "x", "config: expected dict, got str"),
                             ("preset", 3, "preset: expected str, got int"),
                             ("step", True, "step: expected int, got bool"),
                             ("model", {"w": [1.0]}, r"model\.w: expected a tensor, got list")):
        bad = tmp_path / f"{key}.pt"
        torch.save({**state, key: value}, bad)
        with pytest.raises(DataFormatError, match=f"{key}.pt: {want}"):
            load_checkpoint(bad)


def test_quantized_metadata_errors_name_the_field(files, tmp_path):
    from sam3m4.quantize.storage import load_quantized

    folder = _copy_dir(files["quantized"] / "fp16", tmp_path / "q")
    for meta, want in (([1, 2], "quantized.json: <top level>: expected object, got list"),
                       ({"mode": "int3", "preset": "tiny"}, "quantized.json: mode: unknown 'int3'"),
                       ({"mode": "fp16", "preset": "huge"}, "quantized.json: preset: unknown student preset"),
                       ({"mode": "fp16", "preset": "tiny", "kind": "tracker", "num_latents": "8"},
                        "num_latents: expected int, got str")):
        (folder / "quantized.json").write_text(json.dumps(meta))
        with pytest.raises(DataFormatError, match=want):
            load_quantized(folder)


def test_predictor_refuses_an_empty_prompt(files):
    from sam3m4.predict import Predictor

    with pytest.raises(ConfigError, match="prompt: empty"):
        Predictor.from_checkpoint(files["ckpt"]).prompt("   ")
