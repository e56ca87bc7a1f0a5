"""Branches the eager forward runs but whose results no output reads: kept in the graph as side outputs.

UperNet computes its auxiliary head's logits at inference and throws them away (they only feed the training
loss); DPT and Swin backbones apply a final LayerNorm whose result the task head never reads. ``torch.export``
keeps such nodes in its first graph, but its decomposition drops them as dead code and so did the lowering,
and a graph without them is not the model the user gets back: pruning the channels that flow into the
discarded branch left its weights at the old width, and the eager forward, which still runs it, failed
(``auxiliary_head.convs.0.conv: expected input[2, 25, 4, 4] to have 32 channels``).

So the branches that hold weights are kept. :func:`keep_side_branches` makes the ends of the dead branches
that read a parameter or buffer extra outputs of the exported program, before any decomposition (which would
drop them); the lowering takes them off the output list again, marks their IR values
:data:`graphpress.ir.SIDE_OUTPUT` and keeps the nodes that compute them. Passes then edit those weights with
the rest (the coupling analysis follows the branch like any other, :mod:`graphpress.analysis.coupling.
side_outputs` says which of its axes keep their size), dead-code elimination leaves them, and the ONNX
emitter writes only what the outputs need.
Dead ends that read no weight (an unused ``unsqueeze`` or ``getitem``) are dropped as before.
"""

from __future__ import annotations

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind, OutputSpec, TensorArgument
from torch.utils import _pytree as pytree

__all__ = ["side_branch_ends", "keep_side_branches", "model_out_spec"]


def side_branch_ends(ep: ExportedProgram) -> list[torch.fx.Node]:
    """The tensor-valued ends (no users) of the exported graph's dead branches that read a weight.

    A node is dead when no output depends on it; a dead branch reads a weight when one of its dead nodes has a
    parameter or buffer as an argument. Run-time checks (``_assert_scalar`` and what feeds only them) are not
    branches of the model's computation and are left out.
    """
    from .torch_lowering import checks_only

    nodes = list(ep.graph.nodes)
    weights = {spec.arg.name for spec in ep.graph_signature.input_specs
               if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER)}
    live: set[torch.fx.Node] = set()
    stack = [n for n in nodes if n.op == "output"]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        stack.extend(node.all_input_nodes)
    checks = checks_only(nodes)
    weighted: set[torch.fx.Node] = set()  # dead nodes downstream of (or at) a dead node that reads a weight
    for node in nodes:
        if node.op != "call_function" or node in live or node in checks:
            continue
        inputs = node.all_input_nodes
        if any(i.op == "placeholder" and i.name in weights for i in inputs) or any(i in weighted for i in inputs):
            weighted.add(node)
    return [n for n in nodes if n in weighted and not n.users and isinstance(n.meta.get("val"), torch.Tensor)]


def keep_side_branches(ep: ExportedProgram) -> int:
    """Append :func:`side_branch_ends` to the program's outputs (after the user outputs, as user outputs too,
    so that a decomposition keeps them); returns how many. The output pytree becomes ``(model's outputs,
    side 1, side 2, ...)``; :func:`model_out_spec` gives back the model's own."""
    signature = ep.module_call_graph[0].signature if ep.module_call_graph else None
    ends = side_branch_ends(ep) if signature is not None else []
    if not ends:
        return 0
    output = next(n for n in ep.graph.nodes if n.op == "output")
    output.args = (tuple(output.args[0]) + tuple(ends),) + tuple(output.args[1:])
    ep.graph_signature.output_specs.extend(
        OutputSpec(kind=OutputKind.USER_OUTPUT, arg=TensorArgument(name=n.name), target=None) for n in ends)
    leaf = pytree.treespec_leaf() if hasattr(pytree, "treespec_leaf") else pytree.LeafSpec()
    signature.out_spec = pytree.TreeSpec(tuple, None, [signature.out_spec] + [leaf] * len(ends))
    ep.graph_module.recompile()
    return len(ends)


def model_out_spec(ep: ExportedProgram, side_outputs: int) -> pytree.TreeSpec:
    """The pytree spec of the model's own outputs, without the ``side_outputs`` that
    :func:`keep_side_branches` appended."""
    spec = ep.call_spec.out_spec
    if not side_outputs:
        return spec
    return spec.child(0) if hasattr(spec, "child") else spec.children_specs[0]
