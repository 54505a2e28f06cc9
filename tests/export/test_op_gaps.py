"""Per-operator gaps with ExecuTorch's devtools: a program whose one convolution was perturbed after export is
compared (ETDump + debug buffer) with the clean program's ETRecord, and the Inspector's table points at it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sam3m4.export.op_gaps import debug_program, numeric_gaps, rank


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = torch.relu(self.c2(h))
        h = self.c3(h) + h
        return (self.fc(h.mean((2, 3))),)


@pytest.fixture(scope="module")
def clean():
    model = Chain().eval()
    x = (torch.rand(1, 3, 16, 16),)
    program, etrecord = debug_program(torch.export.export(model, x))
    return model, x, program, etrecord


def test_clean_program_matches_eager_everywhere(tmp_path, clean):
    _, x, program, etrecord = clean
    rows = numeric_gaps(program.buffer, etrecord, x, tmp_path)
    assert len(rows) >= 4  # one row per operator (per_op_mode), not one per delegate
    assert min(r.snr_db for r in rows if r.snr_db is not None) > 60
    assert (tmp_path / "run.etdump").is_file() and (tmp_path / "program.etrecord").is_file()


def test_perturbed_convolution_tops_the_table(tmp_path, clean):
    model, x, _, etrecord = clean
    broken = copy.deepcopy(model)
    with torch.no_grad():  # the layer that "broke in export": conv 2's weights off by a lot
        broken.c2.weight.mul_(-0.5)
    program, _ = debug_program(torch.export.export(broken, x))
    rows = numeric_gaps(program.buffer, etrecord, x, tmp_path)  # runtime: broken program; eager: the clean graph
    top = rank(rows)[0]
    assert any(op.startswith("conv2d_1") for op in top.ops), [(r.ops, r.snr_db, r.introduced_db) for r in rows]
    assert top.introduced_db > 20
    before = [r for r in rows if r.order < top.order]
    assert before and all(r.snr_db > 60 for r in before)  # everything before the broken layer still matches
