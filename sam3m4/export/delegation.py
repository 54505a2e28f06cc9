"""How much of each method a backend took: delegated compute ops / all compute ops, from the lowered graph.

    edge = to_edge_transform_and_lower({"forward": ep}, partitioner=[CoreMLPartitioner(...)])
    d = count_delegation(edge.exported_program("forward").graph_module, backend_id="CoreMLBackend")
    d.coverage, d.delegated, d.total, d.non_delegated_ops     # 0.99, 690, 697, {"aten.index.Tensor": 3, ...}

Counting rule (ExecuTorch's backend test suite, ``backends/test/suite/reporting.py``): every ``call_function``
node is an op except ``getitem`` (unpacks a delegate's outputs) and ``executorch_call_delegate`` (the call
itself). Ops in the top-level graph run on the portable CPU kernels; ops inside a ``lowered_module_*``
submodule ran through that module's backend and count as delegated only when its ``backend_id`` is the flow's
(so an XNNPACK fallback partition never counts towards NPU coverage). ExecuTorch's own
``executorch.devtools.backend_debug.get_delegation_info`` counts the same nodes but keeps ``getitem`` and does
not split by backend; :func:`count_delegation` agrees with it once those are removed (tested).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

IGNORED_OPS = frozenset({"getitem", "executorch_call_delegate"})


@dataclass
class Delegation:
    """Delegation of one method's graph to one backend."""

    backend_id: str
    """The backend counted as delegated (``CoreMLBackend``, ``QnnBackend``, ``XnnpackBackend``)."""
    delegated: int = 0
    """Compute ops inside ``lowered_module_*`` submodules of ``backend_id``."""
    total: int = 0
    """All compute ops: delegated + other backends' + left on the portable CPU kernels."""
    subgraphs: int = 0
    """Number of ``lowered_module_*`` partitions of ``backend_id``."""
    non_delegated_ops: dict[str, int] = field(default_factory=dict)
    """Op name (``aten.index.Tensor``) -> count of ops *not* delegated to ``backend_id``, most frequent first;
    ops that went to another backend are named ``<backend_id>:<op>``."""

    @property
    def coverage(self) -> float:
        """delegated / total in [0, 1] (0 for an empty graph)."""
        return self.delegated / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"backend_id": self.backend_id, "delegated": self.delegated, "total": self.total,
                "subgraphs": self.subgraphs, "coverage": self.coverage, "non_delegated_ops": self.non_delegated_ops}


def op_name(target) -> str:
    """Readable name of a node target: ``aten.convolution.default``, ``getitem``, ``executorch_call_delegate``."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # 'aten.convolution.default'
    return getattr(target, "__name__", None) or str(target)  # edge ops: __name__ = 'aten.convolution.default'


def _ops(graph) -> list[str]:
    """Compute-op names of one fx graph (``call_function`` nodes minus :data:`IGNORED_OPS`)."""
    names = (op_name(n.target) for n in graph.nodes if n.op == "call_function")
    return [n for n in names if n not in IGNORED_OPS]


def count_delegation(graph_module, backend_id: str) -> Delegation:
    """Count one lowered method's graph (``EdgeProgramManager.exported_program(m).graph_module``)."""
    result, rest = Delegation(backend_id), Counter()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and op_name(node.target) not in IGNORED_OPS:  # left on portable CPU ops
            rest[op_name(node.target)] += 1
            result.total += 1
        elif node.op == "get_attr" and str(node.target).startswith("lowered_module_"):
            lowered = getattr(graph_module, node.target)
            ops = _ops(lowered.original_module.graph)
            result.total += len(ops)
            if lowered.backend_id == backend_id:
                result.delegated += len(ops)
                result.subgraphs += 1
            else:
                rest.update(f"{lowered.backend_id}:{op}" for op in ops)
    result.non_delegated_ops = dict(rest.most_common())
    return result


def merge(items: list[Delegation]) -> Delegation:
    """All methods together (sums; op counts added)."""
    if not items:
        return Delegation("")
    out, rest = Delegation(items[0].backend_id), Counter()
    for d in items:
        out.delegated += d.delegated
        out.total += d.total
        out.subgraphs += d.subgraphs
        rest.update(d.non_delegated_ops)
    out.non_delegated_ops = dict(rest.most_common())
    return out
