"""The embedded teacher's own gates bite: a deliberately weakened teacher (a handful of the recipe's steps)
is scored by the bootstrap's val evaluation and judged by the same gate function and targets file as
``acceptance/test_stage3.py::test_embedded_teacher_is_useful``; both gates must turn red and the release NO-GO.

    python -m pytest tests/teacher/test_teacher_gates.py -q
"""

from __future__ import annotations

from pathlib import Path

from sam3m4.report.release import FAIL, NO_GO, SPAN, build_matrix
from sam3m4.results import ResultsStore, load_targets, schema
from sam3m4.results.gating import gate_record
from sam3m4.teacher.bootstrap import bootstrap_teacher

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ROOT / "acceptance" / "targets.yaml"
SYNTH = ROOT / "fixtures" / "synth"  # the committed 6-image synthetic set (96 px)
# the recipe's architecture at test size; 2 steps instead of the shipped 1600: a weakened teacher
WEAK = dict(max_steps=2, image_size=56, hidden_size=32, vit_layers=1, vit_window=2, text_layers=1, decoder_layers=1,
            num_queries=6, batch_size=4, pairs_per_image=2)


def test_a_weakened_teacher_turns_the_embedded_teacher_gates_red(tmp_path, one_thread):
    r = bootstrap_teacher(SYNTH, tmp_path / "teacher", seed=0, progress=False, threads=None, **WEAK)
    assert r["steps"] == WEAK["max_steps"] and r["val_num_pairs"] > 0
    targets = load_targets(TARGETS)
    store = ResultsStore("weak", root=tmp_path / "reports")
    provenance = f"bootstrap_teacher on fixtures/synth val, {WEAK['max_steps']} steps (deliberately weakened)"
    for metric, target, value in ((schema.MIOU, "embedded_teacher_miou", r["val_miou"]),
                                  (schema.PRESENCE_F1, "embedded_teacher_presence_f1", r["val_presence_f1"])):
        rec = gate_record(store, targets, stage=schema.STAGE3, subject=schema.TEACHER_EMBEDDED, metric=metric,
                          value=value, target=target, provenance=provenance)
        assert rec.passed is False, f"a {WEAK['max_steps']}-step teacher passed {target}: {value:.3f}"
    matrix = build_matrix(store.records(), targets, run="weak")
    red = {row.gate for row in matrix.rows if row.cells.get(SPAN) is not None and row.cells[SPAN].status == FAIL}
    assert {"embedded_teacher_miou", "embedded_teacher_presence_f1"} <= red
    assert matrix.verdict == NO_GO and len(matrix.blocking()) >= 2
