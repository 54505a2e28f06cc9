"""Share of a lowered method's multiply-accumulates that run in XNNPACK's int8 kernels, read from the graph.

    edge = to_edge_transform_and_lower({"forward": ep}, partitioner=[XnnpackPartitioner()])
    s = int8_mac_share(edge.exported_program("forward").graph_module)
    s.share, s.int8_macs, s.total_macs, s.float_layers[:3]   # 0.93, 9.1e8, 9.8e8, [("bmm", 2.1e7, "float"), ...]

A host-independent figure: it does not time anything, so it reads the same on a CPU with int8 dot products
(AVX512-VNNI, AMX, ARM dotprod / i8mm) and on one without, where XNNPACK's int8 kernels are no faster than fp32.

Counting rule. Every convolution, ``linear``, ``mm``, ``addmm`` and ``bmm`` node of the method (top level and
inside every ``lowered_module_*``) is a layer; its MACs come from the shapes in ``node.meta["val"]``:

* convolution: output elements x (input channels / groups) x kernel elements;
* linear / mm / addmm / bmm: output elements x the reduced width ``K``.

A layer runs in an int8 kernel when it sits inside an ``XnnpackBackend`` delegate and *both* of its operands
(activation and weight; both matrices of a ``bmm`` / ``mm``) come from a dequantize node of an 8-bit-or-fewer
integer tensor: XNNPACK's partitioner fuses exactly those q/dq patterns into its quantized operators
(``qs8`` / ``qd8-f32-qc8w`` convolutions, ``qd8-f32-qb4w`` / ``qc8w`` GEMMs from torchao's 8da4w / 8da8w
linears, whose 4-bit weights are multiplied as int8). Everything else (a float operand, a layer left on the
portable CPU kernels, another backend's layer) counts as float.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sam3m4.export.delegation import op_name

XNNPACK_ID = "XnnpackBackend"
_CONV, _LINEAR, _MATMUL = ("aten.convolution", "aten.conv1d", "aten.conv2d"), ("aten.linear",), \
    ("aten.mm", "aten.bmm", "aten.addmm", "aten.matmul")
_INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32)  # int16/int32: sub-byte values stored wider


@dataclass
class Int8Share:
    """MACs of one (or several merged) lowered method(s), split int8 / float."""

    int8_macs: int = 0
    total_macs: int = 0
    layers: int = 0
    int8_layers: int = 0
    float_macs_by_kind: dict[str, int] = field(default_factory=dict)
    """Layer kind (``conv``, ``depthwise conv``, ``linear``, ``bmm`` ...) -> MACs left float, largest first."""

    @property
    def share(self) -> float:
        """int8 MACs / all MACs in [0, 1] (0 for a graph without such layers)."""
        return self.int8_macs / self.total_macs if self.total_macs else 0.0

    @property
    def percent(self) -> float:
        return 100 * self.share

    def to_dict(self) -> dict:
        return {"int8_macs": self.int8_macs, "total_macs": self.total_macs, "layers": self.layers,
                "int8_layers": self.int8_layers, "share": self.share, "float_macs_by_kind": self.float_macs_by_kind}

    def summary(self) -> str:
        """``93.1% of 0.98 GMAC in int8 (61 / 70 layers); float: bmm 0.05 GMAC, ...``."""
        rest = ", ".join(f"{k} {v / 1e9:.3f} GMAC" for k, v in self.float_macs_by_kind.items())
        return (f"{self.percent:.1f}% of {self.total_macs / 1e9:.2f} GMAC in int8 ({self.int8_layers} / "
                f"{self.layers} layers)" + (f"; float: {rest}" if rest else ""))


def _val(node):
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def layer_kind(node) -> str | None:
    """``conv``, ``depthwise conv``, ``linear``, ``mm``, ``bmm``, ``addmm`` or None (not a MAC layer)."""
    if node.op != "call_function":
        return None
    name = op_name(node.target)
    if name.startswith(_CONV):
        weight = _val(node.args[1])
        groups = int(node.args[8]) if name.startswith("aten.convolution") and len(node.args) > 8 else \
            int(node.args[6]) if len(node.args) > 6 else 1
        return "depthwise conv" if groups > 1 and weight is not None and weight.shape[1] == 1 else "conv"
    if name.startswith(_LINEAR):
        return "linear"
    for prefix in _MATMUL:
        if name.startswith(prefix):
            return prefix.removeprefix("aten.")
    return None


def layer_macs(node, kind: str) -> int:
    """Multiply-accumulates of one layer node (batch included), from ``meta["val"]`` shapes; 0 when unknown."""
    out = _val(node)
    if out is None:
        return 0
    if kind in ("conv", "depthwise conv"):
        weight = _val(node.args[1])
        return 0 if weight is None else _numel(out.shape) * _numel(weight.shape[1:])
    if kind == "linear":
        weight = _val(node.args[1])
        return 0 if weight is None else _numel(out.shape) * int(weight.shape[-1])
    a = _val(node.args[1] if kind == "addmm" else node.args[0])
    return 0 if a is None else _numel(out.shape) * int(a.shape[-1])


def _from_int_dequantize(node) -> bool:
    """True when ``node`` is a dequantize of an integer tensor (q/dq representation of an 8-bit operand)."""
    if not isinstance(node, torch.fx.Node) or node.op != "call_function" or "dequantize" not in op_name(node.target):
        return False
    src = _val(node.args[0])
    return src is not None and src.dtype in _INT_DTYPES


def _operands(node, kind: str) -> list:
    if kind == "addmm":
        return [node.args[1], node.args[2]]
    return [node.args[0], node.args[1]]


def _count(graph, result: Int8Share, delegated: bool) -> None:
    for node in graph.nodes:
        kind = layer_kind(node)
        if kind is None:
            continue
        macs = layer_macs(node, kind)
        result.layers += 1
        result.total_macs += macs
        if delegated and all(_from_int_dequantize(a) for a in _operands(node, kind)):
            result.int8_macs += macs
            result.int8_layers += 1
        else:
            result.float_macs_by_kind[kind] = result.float_macs_by_kind.get(kind, 0) + macs


def int8_mac_share(graph_module, backend_id: str = XNNPACK_ID) -> Int8Share:
    """The int8 / float MAC split of one lowered method (``EdgeProgramManager.exported_program(m).graph_module``)."""
    result = Int8Share()
    _count(graph_module.graph, result, delegated=False)  # left on the portable CPU kernels: float
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and str(node.target).startswith("lowered_module_"):
            lowered = getattr(graph_module, node.target)
            _count(lowered.original_module.graph, result, delegated=lowered.backend_id == backend_id)
    result.float_macs_by_kind = dict(sorted(result.float_macs_by_kind.items(), key=lambda kv: -kv[1]))
    return result
