"""The int8 MAC share of a lowered XNNPACK program (sam3m4.export.int8_share), on small hand-built programs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sam3m4.export.int8_share import int8_mac_share

pytest.importorskip("executorch.backends.xnnpack.partition.xnnpack_partitioner")


class _Net(nn.Module):
    """conv 3->8 (3x3, 8x8 out) -> depthwise 3x3 -> flatten -> linear 512->16."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(512, 16)

    def forward(self, x):
        return self.fc(self.dw(self.conv(x)).flatten(1))


MACS = {"conv": 64 * 8 * 27, "depthwise conv": 64 * 8 * 9, "linear": 512 * 16}


def _lower(module, x):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower({"forward": torch.export.export(module, (x,))},
                                       partitioner=[XnnpackPartitioner()])
    return edge.exported_program("forward").graph_module


def _static_int8(module, x):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, (x,)).module(), quantizer)
    prepared(x)
    return convert_pt2e(prepared)


def test_float_program_has_no_int8_macs():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    share = int8_mac_share(_lower(_Net().eval(), x))
    assert share.total_macs == sum(MACS.values())
    assert share.int8_macs == 0 and share.share == 0.0
    assert share.float_macs_by_kind == dict(sorted(MACS.items(), key=lambda kv: -kv[1]))


def test_static_int8_program_counts_every_layer_int8():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    share = int8_mac_share(_lower(_static_int8(_Net().eval(), x), x))
    assert share.total_macs == sum(MACS.values())
    assert share.int8_macs == share.total_macs and share.int8_layers == share.layers == 3


def test_layers_left_outside_the_delegate_count_float():
    """The same quantized graph, not lowered: no XNNPACK delegate, so nothing runs in its int8 kernels."""
    from executorch.exir import to_edge

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    gm = to_edge({"forward": torch.export.export(_static_int8(_Net().eval(), x), (x,))}) \
        .exported_program("forward").graph_module
    share = int8_mac_share(gm)
    assert share.total_macs == sum(MACS.values()) and share.int8_macs == 0
