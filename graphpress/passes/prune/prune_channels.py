"""``prune-channels`` and ``prune-heads``: structured pruning driven by the coupling analysis.

    graphpress.optimize(model, "prune-channels{ratio=0.3,importance=l2}", example_inputs=...)

Each pass takes the coupling groups (:mod:`graphpress.analysis.coupling`), keeps those in scope (all
prunable groups; only attention-head groups for ``prune-heads``; none touching an ``ignore`` pattern),
scores their units with a registered importance criterion, plans how many units each group loses so that
``ratio`` of the in-scope parameters go (:mod:`.allocate`), and applies the decision to the IR
(:mod:`.apply`). ``flops`` targets a fraction of the model's FLOPs instead (:mod:`.flops_budget`);
``cost=latency`` measures each node's latency in onnxruntime and removes the units with the least importance
per microsecond saved (:mod:`.latency`). Activation-aware criteria (``wanda``, ``flap``, ``come``) get per-linear input statistics
gathered block by block on the calibration data first; when statistics exist the pass also records what
it removed from each linear's input for the recovery passes (``compensate-bias``, ``reconstruct``) later in
the pipeline (:mod:`.removed_inputs`). The torch backend's module fix-ups (with :mod:`graphpress.backends.hf_fixups`) then make
the user's class and its config agree with the new tensors; an ONNX graph is written out with its
shape constants already rewritten.

Before anything is applied, ``recover=true`` (the default) tries the plan on a copy with the example inputs:
forward code that reads a width at run time (which the trace does not record) can make a pruned model fail.
The groups responsible are found by bisection, left unpruned and named in the report (``frozen``), and
the plan is made again over the other groups (:mod:`.recover`). A module that only reshapes with a number it
stored (``self.embed_dim``) is repaired instead, by rewriting that number (:mod:`.size_repair`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter

import numpy as np

from ...analysis.coupling import CouplingGroup, analyze_coupling
from ...backends.evaluate import is_meta_graph
from ...errors import OptionError
from ...ir import Graph
from ..base import Pass, PassResult
from ..context import PassContext
from ..options import Option
from ..registry import register_pass
from .allocate import STANDARDIZE_CHOICES, PruningPlan, plan_pruning
from .apply import apply_keep_mask
from .flops_budget import flops_budget
from .importance import (
    ImportanceContext,
    default_standardize,
    get_importance,
    list_importance,
    needs_gradients,
    needs_statistics,
)
from .input_stats import collect_input_statistics
from .latency import unit_latency_costs
from .recover import PlanTrials, recover_plan, recover_skip_reason
from .removed_inputs import record_removed_inputs, wants_recovery
from .width_ties import WidthTie, describe_tie

__all__ = ["PruneChannels", "PruneHeads", "default_round_to"]


def default_round_to(graph: Graph) -> int:
    """Channel multiples that suit the backend's CPU kernels (torch and onnxruntime).

    Models with convolutions get the NCHWc block of onnxruntime's convolutions, 16 with AVX-512 and 8
    otherwise: channels are padded to whole blocks (88 kept channels cost as 96). On ResNet-50 at half the
    FLOPs the summed kernel times were 2.06x below dense with 16 against 1.89x with 8
    (benchmarks/results/prune_resnet50_speed.md). Models without convolutions (transformers: matrix
    products, where the block argument does not apply) keep multiples of 8.
    """
    if graph.origin not in ("torch", "onnx"):
        return 1
    if not any(node.op in ("Conv", "ConvTranspose") for node in graph.nodes):
        return 8
    from .latency import nchwc_block

    return nchwc_block()


def _module_of(key: str) -> str:
    return key.rsplit(".", 1)[0]


def model_multiples(graph: Graph, groups: list[CouplingGroup]) -> dict[int, int]:
    """Kept-count multiples a torch model requires: Hugging Face configs validate
    ``hidden_size % num_attention_heads == 0``, so the residual-stream group (the one holding the input
    embedding's feature axis) keeps a multiple of the head count; fused mixture-of-experts weights keep
    widths their grouped GEMM accepts (:func:`graphpress.backends.hf_moe.experts_multiples`)."""
    module = graph.module
    if graph.origin != "torch" or module is None:
        return {}
    from ...backends.hf_fixups import input_embeddings
    from ...backends.hf_moe import experts_multiples

    multiples: dict[int, int] = {}
    aligned = experts_multiples(module)
    for g in groups:
        for m in g.members:
            if (m.key, m.axis) in aligned:
                multiples[g.index] = int(np.lcm(multiples.get(g.index, 1), aligned[(m.key, m.axis)]))
    heads = getattr(getattr(module, "config", None), "num_attention_heads", None)
    embedding = input_embeddings(module)
    if not isinstance(heads, int) or embedding is None:
        return multiples
    names = {name for name, p in module.named_parameters(remove_duplicate=False)
             if embedding is not None and p is getattr(embedding, "weight", None)}
    for g in groups:
        if any(m.key in names and m.axis == 1 for m in g.members):
            multiples[g.index] = int(np.lcm(multiples.get(g.index, 1), heads))
    return multiples


class _StructuredPrune(Pass):
    options = (
        Option("ratio", "float", 0.2, "fraction of the in-scope PARAMETERS to remove (not of channels): a weight "
               "is in scope when a prunable group touches it", low=0.0, high=1.0, high_inclusive=False),
        Option("importance", "str", "l2", "unit score: l1 | l2 | random; with calibration: taylor | wanda (Wanda-sp) | "
               "flap (fluctuation) | come (CoMe sensitivity), or any criterion registered with @register_importance"),
        Option("scope", "str", "local", "local: every group loses about the same fraction (near-uniform layer widths); "
               "global: units ranked across groups (widths differ per layer)", choices=("local", "global")),
        Option("standardize", "str", "auto", "scope=global only, how scores of groups are made comparable: mean "
               "(divide by the group's mean) | group (z-score per group) | kind (z-score per kind of group across "
               "layers, FLAP) | auto (group for wanda/flap/come, mean otherwise)",
               choices=("auto",) + STANDARDIZE_CHOICES),
        Option("flops", "float", 0.0, "fraction of the whole model's FLOPs to remove instead of ratio (0 = use ratio); "
               "e.g. flops=0.5 halves them", low=0.0, high=1.0, high_inclusive=False),
        Option("cost", "str", "params", "what a removed unit saves when groups compete: params (rank by importance "
               "as scope says) | latency (measure each node in onnxruntime on the model, then remove the units "
               "with the least importance per microsecond saved, across groups; needs onnxruntime)",
               choices=("params", "latency")),
        Option("profile_runs", "int", 5, "cost=latency: profiled onnxruntime runs (per node, the median of the faster half)", low=1, high=100),
        Option("threads", "int", 2, "cost=latency: onnxruntime intra-op threads to profile with", low=1, high=256),
        Option("max_ratio", "float", 0.0, "most of any one group's units a cross-group ranking (scope=global, "
               "cost=latency) may remove, so no layer is pruned to a sliver (0 = auto: 0.75 with cost=latency, "
               "1 otherwise)", low=0.0, high=1.0),
        Option("round_to", "int", 0, "kept channel counts are multiples of this where a group is wide enough "
               "(0 = backend default: with convolutions onnxruntime's NCHWc block, 16 on AVX-512 CPUs, else 8; "
               "without, 8; narrower groups round to 8)", low=0),
        Option("ignore", "list", [], "module-name glob patterns never to prune, separated by | "
               "(e.g. lm_head|model.layers.0.*)"),
        Option("seed", "int", 0, "seed of importance=random"),
        Option("recover", "bool", True, "test the plan on a copy with the example inputs first; groups whose "
               "pruning makes the model fail or change its output shapes (forward code that reads a width at run "
               "time, e.g. SegFormer's sequence reduction) are found by bisection, left unpruned and named in the "
               "report (frozen), and the ratio goes to the other groups; a failure that a stale size attribute "
               "explains (a reshape to self.embed_dim) is repaired instead, by rewriting it where the outputs then "
               "match the pruned graph's (size_repairs in the report); false: refuse such a model instead"),
    )
    heads_only = False

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        super().requires(graph, ctx)
        if self.opts["importance"] not in list_importance():
            raise OptionError(f"option 'importance' of pass '{self.name}' must be one of "
                              f"{', '.join(list_importance())}; got {self.opts['importance']!r}")

    def uses_calibration(self) -> bool:
        name = self.opts["importance"]
        return needs_gradients(name) or needs_statistics(name)

    def _in_scope(self, group: CouplingGroup) -> bool:
        if not group.prunable:
            return False
        if self.heads_only and not any("query head" in note for note in group.notes):
            return False
        patterns = self.opts["ignore"] or []
        return not any(fnmatch.fnmatch(_module_of(m.key), p) or fnmatch.fnmatch(m.key, p)
                       for m in group.members for p in patterns)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        ratio = self.opts["flops"] or self.opts["ratio"]
        result = analyze_coupling(graph)
        groups = [g.index for g in result.groups if self._in_scope(g)]
        stats = {"groups_in_scope": len(groups), "groups_total": len(result.groups),
                 "uncovered_ops": len(result.uncovered)}
        if result.uncovered:
            stats["frozen_by"] = _frozen_by(result.uncovered)
            _log.warning("graphpress: %s: channels that flow into ops without a coupling rule stay unpruned: %s%s",
                         self.name, stats["frozen_by"],
                         "; nothing else is prunable" if not groups else "")
        if ratio == 0 or not groups:
            stats.update({"removed_params": 0, "achieved_ratio": 0.0})
            return PassResult(graph, False, stats)
        name = self.opts["importance"]
        imp_ctx = ImportanceContext(graph, result, ctx, seed=self.opts["seed"])
        if needs_gradients(name):
            from .taylor import collect_gradients

            imp_ctx.gradients = collect_gradients(graph, ctx.calibration, ctx.tokenizer)
        recovery, gram = wants_recovery(ctx)
        if needs_statistics(name) or recovery:
            why = f"{self.name}{{importance={name}}}" if needs_statistics(name) else "compensate-bias/reconstruct"
            imp_ctx.statistics = collect_input_statistics(graph, ctx.calibration, ctx.tokenizer, with_gram=gram,
                                                          why=why)
        criterion = get_importance(name)
        scores = {gi: np.asarray(criterion(imp_ctx, result.groups[gi]), dtype=np.float64) for gi in groups}
        round_to = self.opts["round_to"] or default_round_to(graph)
        standardize = self.opts["standardize"]
        budget, target, unit_cost = None, None, None
        if self.opts["flops"]:
            budget, target, model_flops = flops_budget(graph, result, groups, self.opts["flops"])
            stats["flops_target"] = round(target / model_flops, 4)
        if self.opts["cost"] == "latency":
            unit_cost, profile = unit_latency_costs(graph, result, groups, ctx.example_inputs,
                                                    self.opts["profile_runs"], self.opts["threads"])
            stats.update(profile)
        multiples = model_multiples(graph, result.groups)

        def plan_for(chosen: list[int], ties: list[WidthTie] | None = None) -> PruningPlan:
            chosen_budget = budget
            if self.opts["flops"] and chosen != groups:  # the same FLOPs to remove, from fewer groups
                chosen_budget, _, _ = flops_budget(graph, result, chosen, self.opts["flops"])
            return plan_pruning(result, chosen, scores, ratio, self.opts["scope"], round_to, multiples,
                                default_standardize(name) if standardize == "auto" else standardize,
                                unit_cost=unit_cost, budget=chosen_budget, target=target,
                                max_fraction=self.opts["max_ratio"] or (0.75 if unit_cost is not None else 1.0),
                                ties=ties)

        plan = plan_for(groups)
        requested_scope = plan.in_scope_params
        skip = recover_skip_reason(graph) if self.opts["recover"] else None
        if skip:
            stats["recover"] = f"skipped: {skip}"
            ctx.log.append(f"{self.name}: recover= skipped: {skip}")
        if self.opts["recover"] and not skip and plan.keep and ctx.example_inputs is not None \
                and not is_meta_graph(graph):
            trials = PlanTrials(graph, result, ctx.example_inputs, ctx.example_kwargs)
            plan, frozen, ties = recover_plan(plan, groups, plan_for, trials, self.name)
            stats["recover_trials"] = trials.runs
            if ties:
                stats["width_ties"] = [describe_tie(result, tie) for tie in ties]
                ctx.log.append(f"{self.name}: pruned by equal widths: {'; '.join(stats['width_ties'])}")
            if trials.repairs:
                stats["size_repairs"] = [rule.describe() + ("" if checked else " (graph not runnable: shapes only)")
                                         for rule, checked in trials.repairs]
                ctx.log.append(f"{self.name}: size attributes rewritten: {'; '.join(stats['size_repairs'])}")
            if frozen:
                stats["frozen"] = [f.message() for f in frozen]
                stats["groups_in_scope"] = len(groups) - len(frozen)
                stats["in_scope_params_before_recover"] = requested_scope
                for message in stats["frozen"]:
                    _log.warning("graphpress: %s: %s", self.name, message)
                    ctx.log.append(f"{self.name}: {message}")
        if not plan.keep:
            stats.update({"removed_params": 0, "achieved_ratio": 0.0})
            if stats.get("frozen"):
                _log.warning("graphpress: %s: nothing left to prune after freezing the groups that broke the "
                             "model; the model is unchanged", self.name)
            return PassResult(graph, False, stats)
        if imp_ctx.statistics:
            stats["linears_recorded"] = record_removed_inputs(result, plan.keep, imp_ctx.statistics, ctx.extras)
        applied = apply_keep_mask(graph, result, result.keep_ids(plan.keep))
        stats.update(applied)
        if budget is None:
            stats.update({"in_scope_params": plan.in_scope_params, "removed_params": plan.removed_params,
                          "achieved_ratio": round(plan.achieved_ratio, 4)})
        else:  # the plan counted FLOPs
            stats.update({"in_scope_flops": plan.in_scope_params, "removed_flops": plan.removed_params,
                          "achieved_flops": round(plan.removed_params / model_flops, 4)})
        stats.update({"round_to": round_to, "groups_pruned": len(plan.keep), "cost": self.opts["cost"]})
        for note in plan.notes[:8]:
            ctx.log.append(f"{self.name}: {note}")
        if plan.notes:
            stats["rounding"] = plan.notes[:8]
        return PassResult(graph, True, stats)


@register_pass
class PruneChannels(_StructuredPrune):
    name = "prune-channels"
    summary = ("Structured pruning of every coupled dimension (channels, MLP width, hidden size, attention "
               "heads); ratio = fraction of in-scope parameters removed.")


@register_pass
class PruneHeads(_StructuredPrune):
    name = "prune-heads"
    summary = "Structured pruning of attention heads only (whole KV heads with their query groups under GQA)."
    heads_only = True


_log = logging.getLogger("graphpress")


def _frozen_by(uncovered: dict[str, str]) -> str:
    """The ops that froze channels, most frequent first: ``"com.microsoft::FusedConv x12, ..."``.

    Ops without a coupling rule (custom domains; onnxruntime's fused attention, kept whole on purpose) freeze
    every channel through them; the user reads here why a ratio was not reached. A deliberate freeze keeps
    its reason after the op name ("com.microsoft::Attention (fused attention: ...)"); a rule failure is
    counted under its op.
    """
    counts = Counter(op.split(" (rule failed")[0] for op in uncovered.values())
    return ", ".join(f"{op} x{n}" for op, n in counts.most_common(6)) + (", ..." if len(counts) > 6 else "")
