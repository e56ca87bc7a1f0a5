"""Lowering an exported (core-aten) FX graph into graphpress IR.

:func:`lower_exported_program` walks ``ep.graph`` once, front to back. Placeholders become graph inputs or
constants bound to the working module (``ModuleBinding`` keyed by the state_dict name, so editing a
parameter edits the model); every ``call_function`` node is either

* folded: all of its inputs are IR-held constants (``arange``, ``full``, a causal mask built from them),
  so it is run once, eagerly, on the CPU and becomes a constant; or
* lowered by the rule registered for its target (see :mod:`.torch_registry`), which emits IR nodes
  through a :class:`~.torch_context.LoweringContext`; or
* evaluated: it has no rule but depends on the model's weights alone (torch's orthogonal parametrization),
  or reads such an evaluated tensor, so it is computed once and held as a constant whose channels stay
  frozen (see :mod:`.torch_weight_eval`).

Every value gets its shape and dtype from the aten node's ``meta["val"]``; after each rule the shape it
produced is checked against torch's, so a wrong rule fails at trace time, naming the op and the module,
instead of giving a wrong ONNX file later. Each IR node records the innermost ``nn_module_stack`` path as
its ``scope`` and the module class in ``node.meta["module_class"]``. The bodies of higher-order ops
(``torch.no_grad()`` or ``autocast(enabled=False)`` regions inside forward) are inlined.
"""

from __future__ import annotations

import operator
from typing import Any, Iterable

import torch
import torch.fx
from torch.export import ExportedProgram
from torch.export.graph_signature import ConstantArgument, InputKind
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from ..errors import DataDependentError, FrontendError, GraphpressError, StateMutationError, UnsupportedOpError
from ..ir import SHAPED_LIKE, SIDE_OUTPUT, Graph, ModuleBinding, Parameter, Value
from .torch_bindings import AliasedModuleBinding, tensor_aliases
from .torch_context import LoweringContext, module_info, shape_of
from .torch_registry import rule_for
from .torch_rules_complex import complex_rule_for, involves_complex, real_layout
from .torch_side_branches import model_out_spec
from .torch_weight_eval import evaluate_from_weights, reads_evaluated

__all__ = ["lower_exported_program", "lower_nodes"]

# Nodes that check invariants at run time and produce nothing a model computes with.
_SIDE_EFFECT_ONLY = ("_assert", "sym_constrain_range")


def _is_foldable_constant(value: Any) -> bool:
    if isinstance(value, Value):
        return value.param is not None and value.param.kind == "constant" and not value.param.is_meta
    if isinstance(value, (list, tuple)):
        return all(_is_foldable_constant(v) for v in value)
    return True


def _try_fold(ctx: LoweringContext, node: torch.fx.Node) -> Any:
    """Run a node whose inputs are all IR-held constants; None when it cannot be folded."""
    if node.target is operator.getitem or not isinstance(node.target, torch._ops.OpOverload):
        return None
    inputs = [ctx.env[n] for n in node.all_input_nodes]
    if not all(_is_foldable_constant(v) for v in inputs):
        return None

    # Folding runs on the CPU whatever device the model is on: constants are tiny, and an op that creates a
    # tensor (its ``device`` forced to the CPU, so a meta-device model still gets real constants) may meet a
    # buffer of a GPU model in the next fold (Bloom's ALiBi slopes, GPT-J's rotary table on the H100).
    def materialize(n: torch.fx.Node) -> Any:
        found = ctx.env[n]
        if isinstance(found, list):
            return [v.param.data.cpu() for v in found]
        return found.param.data.cpu() if isinstance(found, Value) else found

    args = torch.fx.node.map_arg(node.args, materialize)
    kwargs = dict(torch.fx.node.map_arg(node.kwargs, materialize))
    if "device" in kwargs:
        kwargs["device"] = torch.device("cpu")
    with torch.no_grad():
        result = node.target(*args, **kwargs)
    if isinstance(result, torch.Tensor):
        return ctx.const(torch.view_as_real(result) if result.is_complex() else result, hint=node.name)
    if isinstance(result, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in result):
        return [ctx.const(t, hint=f"{node.name}_{i}") for i, t in enumerate(result)]
    return result


def _check_shapes(ctx: LoweringContext, node: torch.fx.Node, result: Any) -> None:
    meta = node.meta.get("val")
    pairs = []
    if isinstance(result, Value) and isinstance(meta, torch.Tensor):
        pairs = [(result, meta)]
    elif isinstance(result, list) and isinstance(meta, (list, tuple)):
        pairs = [(r, m) for r, m in zip(result, meta) if isinstance(r, Value) and isinstance(m, torch.Tensor)]
    for value, fake in pairs:
        shape, dtype = real_layout(fake) if fake.is_complex() else (shape_of(fake), fake.dtype)
        if value.shape != shape or value.dtype != dtype:
            raise FrontendError(
                f"internal error lowering {ctx.describe()}: produced {value!r}, torch says "
                f"{list(shape_of(fake))}:{fake.dtype}; please report this with the model"
            )


def _lower_placeholder(ctx: LoweringContext, node: torch.fx.Node, spec: Any, ep: ExportedProgram,
                       module: torch.nn.Module) -> Any:
    graph = ctx.graph
    if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
        # Tied tensors arrive as one placeholder per name; they must be one IR value, or an edit through
        # one name would silently untie them.
        tensor_id = id(ModuleBinding(module, spec.target).get())
        if tensor_id in ctx.bound_tensors:
            return ctx.bound_tensors[tensor_id]
        names = ctx.aliases.get(tensor_id, [spec.target])
        binding = AliasedModuleBinding(module, names[0], names[1:]) if len(names) > 1 else ModuleBinding(
            module, spec.target)
        kind = "parameter" if spec.kind == InputKind.PARAMETER else "buffer"
        value = graph.add_constant(Parameter(binding, kind=kind), name=binding.key)
        ctx.bound_tensors[tensor_id] = value
        return value
    if spec.kind == InputKind.CONSTANT_TENSOR:
        return ctx.const(ep.constants[spec.target], hint=spec.target)
    if spec.kind == InputKind.USER_INPUT:
        if isinstance(spec.arg, ConstantArgument):
            return spec.arg.value
        val = node.meta["val"]
        return graph.add_input(node.name, shape_of(val), val.dtype)
    raise FrontendError(f"unsupported exported input {spec.arg} of kind {spec.kind.name}")


def _output_names(out_spec: Any, count: int) -> list[str]:
    """Readable output names from the output pytree ("logits", "last_hidden_state", "0", ...)."""
    from torch.utils import _pytree as pytree

    try:
        dummy = pytree.tree_unflatten(list(range(count)), out_spec)
        paths = [path for path, _ in pytree.tree_flatten_with_path(dummy)[0]]
        names = ["_".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in p) for p in paths]
        return [n or "output" for n in names]
    except Exception:  # an exotic output container: fall back to positions
        return [f"output_{i}" for i in range(count)]


def _finish(ctx: LoweringContext, results: list[Any], names: list[str]) -> None:
    graph = ctx.graph
    for result, name in zip(results, names):
        if result is None:  # a None in the output structure (LLaVA's tuple of vision hidden states): no tensor
            continue
        if not isinstance(result, Value):
            raise FrontendError(f"model output {name!r} is not a tensor ({type(result).__name__}); return tensors")
        if result.producer is None or result in graph.outputs:  # an input or constant returned as is
            node = graph.make_node("Identity", [result])
            node.outputs[0].shape, node.outputs[0].dtype = result.shape, result.dtype
            result = node.outputs[0]
        result.name = graph.unique_name(name)
        graph.outputs.append(result)
    # Rules may leave nodes nobody reads (an unused output of a split, a skipped branch): drop them. Ends of
    # branches the model runs but no output reads (``SIDE_OUTPUT``) stay, with what computes them.
    live = {id(v) for v in graph.outputs}
    live |= {id(out) for node in graph.nodes for out in node.outputs if out.meta.get(SIDE_OUTPUT)}
    sizers = _shaped_like_sources(graph)
    for node in reversed(list(graph.nodes)):
        if all(not out.uses and id(out) not in live for out in node.outputs):
            kept = [out for out in node.outputs if id(out) in sizers]
            if kept:
                for out in kept:
                    out.meta[SIDE_OUTPUT] = True
                continue
            graph.remove(node)
    graph.prune_unused_constants()


def _shaped_like_sources(graph: Graph) -> set[int]:
    """The values whose size a read constant follows (``SHAPED_LIKE``: ``x[a:b].zero_()`` is the constant
    ``zeros_like(x[a:b])`` written into ``x``). The model computes such a value even when only its size is
    read, and the coupling analysis takes the constant's channels from it, so a dead one stays as a side
    output rather than leaving the constant with channels of its own (frozen, and in Swin-V2's zeroed k bias,
    splitting every head)."""
    return {id(c.meta[SHAPED_LIKE]) for c in graph.constants
            if c.uses and isinstance(c.meta.get(SHAPED_LIKE), Value) and c.meta[SHAPED_LIKE].producer is not None}


#: ops whose results have sizes (or are Python numbers) known only from the tensor values at run time
_DATA_DEPENDENT = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.masked_select.default,
                   torch.ops.aten.unique_consecutive.default, torch.ops.aten._unique2.default}


def _lower_call(ctx: LoweringContext, node: torch.fx.Node) -> Any:
    # What reads a tensor evaluated from the weights is evaluated with it while it depends on weights alone
    # (before folding, which would drop the mark that keeps its channels frozen).
    evaluated = evaluate_from_weights(ctx, node) if reads_evaluated(ctx, node) else None
    if evaluated is not None:
        return evaluated
    folded = _try_fold(ctx, node)
    if folded is not None:
        return folded
    complex_values = node.target is not operator.getitem and involves_complex(node)
    rule = complex_rule_for(node.target) if complex_values else rule_for(node.target)
    if rule is None and complex_values:
        raise UnsupportedOpError(
            f"no graphpress rule for {ctx.describe()} on complex tensors; add one with "
            f"@graphpress.frontends.torch_rules_complex.lowers_complex({node.target}) (complex values are carried "
            f"as real ones with a trailing axis of two), or rewrite that module with ops graphpress knows")
    if rule is None and node.target in _DATA_DEPENDENT:
        raise DataDependentError(
            f"{ctx.describe()} reads a tensor's values into Python (.item(), .tolist(), nonzero, a boolean "
            f"mask): the shapes after it depend on the data, and graphpress graphs have static shapes. Give "
            f"that module a forward with static shapes while tracing "
            f"(@graphpress.frontends.torch_substitutions.register_trace_substitution, as torch_moe.py does for "
            f"mixture-of-experts layers), rewrite it without data-dependent sizes, or trace with "
            f"specialise_values=True to take them from the example input")
    if rule is None and ctx.evaluate_weights:
        evaluated = evaluate_from_weights(ctx, node)  # computed from weights alone: evaluated once, frozen
        if evaluated is not None:
            return evaluated
        raise UnsupportedOpError(
            f"no graphpress rule for {ctx.describe()}; add one with "
            f"@graphpress.frontends.torch_registry.lowers({node.target}), or rewrite that module "
            f"with ops graphpress knows"
        )
    try:
        result = rule(ctx, node)
    except GraphpressError:
        raise
    except Exception as exc:  # a rule met a form of its op it does not handle: say which op and where
        raise FrontendError(f"could not lower {ctx.describe()}: {type(exc).__name__}: {exc}") from exc
    _check_shapes(ctx, node, result)
    return result


def _is_check(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and any(tag in str(node.target) for tag in _SIDE_EFFECT_ONLY)


def checks_only(nodes: list[torch.fx.Node]) -> set[torch.fx.Node]:
    """The call nodes that only feed run-time checks: the checks themselves and what computes nothing but their
    conditions. ``torch._check_tensor_all(cond)`` (Hugging Face's ``torch_compilable_check``, e.g. "as many
    image features as image tokens") exports as ``_is_all_true -> item -> sym_ite -> _assert_scalar``: the
    model computes nothing with it, and the ``item`` would otherwise read as a data-dependent shape."""
    found: set[torch.fx.Node] = set()
    for node in reversed(nodes):
        if node.op != "call_function":
            continue
        if _is_check(node) or (node.users and all(user in found for user in node.users)):
            found.add(node)
    return found


def lower_nodes(ctx: LoweringContext, nodes: Iterable[torch.fx.Node]) -> list[Any]:
    """Lower the non-placeholder nodes of one FX graph into ``ctx``; returns what its output node returns."""
    outputs: list[Any] = []
    nodes = list(nodes)
    skipped = checks_only(nodes)
    for node in nodes:
        ctx.node = node
        if node.op == "call_function":
            if node not in skipped:
                _refuse_data_sized(ctx, node)
                ctx.env[node] = _lower_call(ctx, node)
        elif node.op == "get_attr":  # the body of a higher-order op
            ctx.env[node] = getattr(node.graph.owning_module, node.target)
        elif node.op == "output":
            outputs = [ctx.env[n] if isinstance(n, torch.fx.Node) else n for n in node.args[0]]
        elif node.op != "placeholder":
            raise FrontendError(f"unexpected FX node {node.op} {node.target} in the exported graph")
    return outputs


def _refuse_data_sized(ctx: LoweringContext, node: torch.fx.Node) -> None:
    """A tensor whose size torch.export left as an unbacked symbol (``nonzero``, ``repeat_interleave`` by counts,
    sizes read with ``.item()``): the trace retries with the example's values (``trace(specialise_values=None)``)."""
    values = [v for v in torch.utils._pytree.tree_leaves(node.meta.get("val")) if isinstance(v, torch.Tensor)]
    if any(free_unbacked_symbols(v) for v in values):
        raise DataDependentError(
            f"{ctx.describe()} makes a tensor whose size depends on the data, and graphpress graphs have static "
            f"shapes. trace() takes such sizes from the example input (specialise_values) for torch's own ops "
            f"(nonzero, boolean masks, repeat_interleave, .item()), not for custom ops: give this one a trace "
            f"substitution (@graphpress.frontends.torch_substitutions.register_trace_substitution)")


def _mutation_error(ep: ExportedProgram, module: torch.nn.Module) -> StateMutationError:
    targets = [spec.target or spec.arg.name for spec in ep.graph_signature.output_specs
               if spec.kind.name != "USER_OUTPUT"]
    mode = "in training mode (call model.eval())" if module.training else "in evaluation mode"
    shown = ", ".join(targets[:6]) + (f" and {len(targets) - 6} more" if len(targets) > 6 else "")
    return StateMutationError(
        f"{type(module).__name__}'s forward writes to {shown} {mode}; a graph can only stand for a forward that "
        f"computes its outputs from its inputs. Keep state updates (step counters, caches, running statistics) "
        f"out of forward, or give the module a tracing forward "
        f"(@graphpress.frontends.torch_substitutions.register_trace_substitution)",
        targets)


def lower_exported_program(ep: ExportedProgram, module: torch.nn.Module, name: str = "graph",
                           evaluate_weights: bool = True, side_outputs: int = 0) -> Graph:
    """Lower an ExportedProgram whose parameters live in ``module`` to a torch-origin Graph.

    Raises :class:`UnsupportedOpError` at the first op without a rule; the caller may then decompose the
    program further and try again. ``evaluate_weights``: an op without a rule that depends on weights alone
    is evaluated once instead (see :mod:`.torch_weight_eval`); a caller that will try a decomposed program
    next passes False, so that ops the decomposition can express (weight_norm's) stay in the graph.
    ``side_outputs``: how many of the last outputs are ends of branches no model output reads
    (:func:`.torch_side_branches.keep_side_branches`): not graph outputs, but values marked ``SIDE_OUTPUT``
    whose nodes stay in the graph.
    """
    graph = Graph(name, origin="torch")
    graph.module = module
    ctx = LoweringContext(graph)
    ctx.evaluate_weights = evaluate_weights
    ctx.aliases = tensor_aliases(module)
    specs = {spec.arg.name: spec for spec in ep.graph_signature.input_specs}
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            ctx.node = node
            ctx.env[node] = _lower_placeholder(ctx, node, specs[node.name], ep, module)
    outputs = lower_nodes(ctx, ep.graph.nodes)
    user_outputs = [s for s in ep.graph_signature.output_specs if s.kind.name == "USER_OUTPUT"]
    if len(user_outputs) != len(outputs):
        raise _mutation_error(ep, module)
    side = outputs[len(outputs) - side_outputs:]
    outputs = outputs[:len(outputs) - side_outputs]
    for value in side:
        if isinstance(value, Value) and value.producer is not None:
            value.meta[SIDE_OUTPUT] = True
    out_spec = model_out_spec(ep, side_outputs)
    _finish(ctx, outputs, _output_names(out_spec, len(outputs)))
    graph.metadata["module_classes"] = {
        path: cls for path, cls in (module_info(n) for n in ep.graph.nodes if n.op == "call_function") if path
    }
    graph.metadata["input_names"] = [v.name for v in graph.inputs]
    graph.metadata["output_names"] = [v.name for v in graph.outputs]
    graph.metadata["output_spec"] = out_spec
    return graph
