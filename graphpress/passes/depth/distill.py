"""``distill{steps, lr, ...}``: CoMe's hierarchical distillation of a compressed model, layer by layer.

After pruning or merging, each student decoder layer is trained to produce what the ORIGINAL layers it
stands for produce: student layer ``i`` with span ``[a, b]`` (``config.graphpress_layer_map``; identity
when the depth is unchanged) must map the residual stream to the teacher's ``x_{b+1}``. The teacher is
``ctx.extras["reference_module"]``, the user's untouched model, only ever run under ``no_grad``.

Layers are visited in order. A student layer's input is the output of the already-distilled student
layers before it (``inputs=student``, default), so each layer also learns to correct the error that
accumulated upstream; ``inputs=teacher`` feeds it the teacher's ``x_a`` instead (CoMe's literal setup).
Only the parameters of one layer are trainable at a time, so memory is one layer's gradients and Adam
state plus the calibration hidden states, and a 135M model distills on a CPU in minutes.

The loss is the mean squared error relative to the target's mean square. A layer whose loss on the
calibration data ends higher than it started is restored (distillation never makes a layer worse on
the data it sees). ``scope=changed`` (default) trains only layers that differ from their teacher: merged
layers, layers that absorbed dropped ones, and width-pruned layers; ``scope=all`` trains every layer.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ...errors import PassError
from ...ir import Graph
from ..base import Pass, PassResult
from ..context import PassContext
from ..options import Option
from ..registry import register_pass
from .activations import Hidden, LayerInputs, calibration_inputs, capture_layer_inputs, run_layer
from .hf_layers import decoder_layers, layer_map

__all__ = ["Distill", "LayerDistiller"]


def _same_weights(student: nn.Module, teacher: nn.Module) -> bool:
    student_state, teacher_state = student.state_dict(), teacher.state_dict()
    return student_state.keys() == teacher_state.keys() and all(
        student_state[k].shape == teacher_state[k].shape and torch.equal(student_state[k], teacher_state[k])
        for k in student_state)


def _relative_error(outputs: Hidden, targets: Hidden) -> torch.Tensor:
    error = sum((o - t).pow(2).sum() for o, t in zip(outputs, targets))
    scale = sum(t.pow(2).sum() for t in targets)
    return error / scale


class LayerDistiller:
    """Trains one student layer on (input, target) hidden states with Adam, a bounded number of steps."""

    def __init__(self, steps: int, lr: float, seed: int = 0):
        self.steps = steps
        self.lr = lr
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def loss(self, layer: nn.Module, inputs: LayerInputs, hidden: Hidden, targets: Hidden) -> float:
        return _relative_error(run_layer(layer, hidden, inputs.calls), targets).item()

    def fit(self, layer: nn.Module, inputs: LayerInputs, hidden: Hidden, targets: Hidden) -> tuple[float, float]:
        """Train ``layer`` in place; return the loss on all batches before and after (restored if worse)."""
        before = self.loss(layer, inputs, hidden, targets)
        saved = copy.deepcopy(layer.state_dict())
        flags = {name: p.requires_grad for name, p in layer.named_parameters()}
        params = [p for p in layer.parameters() if p.dtype.is_floating_point]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=self.lr)
        try:
            with torch.enable_grad():
                for _ in range(self.steps):
                    pick = int(torch.randint(len(hidden), (1,), generator=self.generator))
                    output = run_layer(layer, [hidden[pick]], [inputs.calls[pick]])
                    loss = _relative_error(output, [targets[pick]])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        finally:
            for name, p in layer.named_parameters():
                p.requires_grad_(flags[name])
                p.grad = None
        after = self.loss(layer, inputs, hidden, targets)
        if not after < before:
            layer.load_state_dict(saved)
            after = before
        return before, after


@register_pass
class Distill(Pass):
    name = "distill"
    needs_reference = True
    summary = "Train each compressed decoder layer to match the original layer(s) it replaces (needs calibration)."
    options = (
        Option("steps", "int", 100, "Adam steps per trained layer (one calibration batch a step)", low=1),
        Option("lr", "float", 1e-4, "Adam learning rate", low=0.0, low_inclusive=False, high=1.0),
        Option("samples", "int", 16, "calibration sequences used", low=1),
        Option("batch_size", "int", 2, "calibration sequences per step", low=1),
        Option("inputs", "str", "student", "layer inputs: student (outputs of the distilled layers before) or "
               "teacher (the original model's hidden states)", choices=("student", "teacher")),
        Option("scope", "str", "changed", "changed = only layers that differ from the teacher; all = every layer",
               choices=("changed", "all")),
    )
    origins = frozenset({"torch"})
    needs_calibration = True

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        super().requires(graph, ctx)
        if not isinstance(ctx.extras.get("reference_module"), nn.Module):
            raise PassError("distill needs the original model as its teacher (ctx.extras['reference_module']); "
                            "graphpress.optimize() sets it for torch models")

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        student, teacher = graph.module, ctx.extras["reference_module"]
        _, student_layers = decoder_layers(student)
        _, teacher_layers = decoder_layers(teacher)
        spans = layer_map(student)
        if spans[-1][1] >= len(teacher_layers):
            raise PassError(f"the student's layer map reaches original layer {spans[-1][1]} but the teacher "
                            f"has {len(teacher_layers)} layers")
        batches = calibration_inputs(ctx, self.opts["samples"], self.opts["batch_size"])
        with _eval_mode(student), _eval_mode(teacher):
            report = self._distill(student_layers, teacher_layers, spans, batches, student, teacher)
        trained = [r for r in report if r["trained"]]
        return PassResult(graph, any(r["loss_after"] < r["loss_before"] for r in trained), {
            "layers_trained": len(trained),
            "per_layer": report,
        })

    def _distill(self, student_layers: nn.ModuleList, teacher_layers: nn.ModuleList, spans: list[list[int]],
                 batches: list[dict[str, Any]], student: nn.Module, teacher: nn.Module) -> list[dict]:
        student_inputs = capture_layer_inputs(student, batches)
        teacher_inputs = capture_layer_inputs(teacher, batches)
        distiller = LayerDistiller(self.opts["steps"], self.opts["lr"])
        student_hidden, teacher_hidden, teacher_at = student_inputs.hidden, teacher_inputs.hidden, 0
        report = []
        for index, (layer, (first, last)) in enumerate(zip(student_layers, spans)):
            teacher_start = teacher_hidden
            with torch.no_grad():
                while teacher_at <= last:
                    teacher_hidden = run_layer(teacher_layers[teacher_at], teacher_hidden, teacher_inputs.calls)
                    teacher_at += 1
            changed = first != last or not _same_weights(layer, teacher_layers[first])
            hidden = teacher_start if self.opts["inputs"] == "teacher" else student_hidden
            entry = {"layer": index, "span": [first, last], "trained": False}
            if changed or self.opts["scope"] == "all":
                before, after = distiller.fit(layer, student_inputs, hidden, teacher_hidden)
                entry.update(trained=True, loss_before=round(before, 6), loss_after=round(after, 6))
            report.append(entry)
            with torch.no_grad():
                student_hidden = run_layer(layer, student_hidden, student_inputs.calls)
        return report


class _eval_mode:
    """Context manager: a module in eval mode (no dropout) for the duration, its mode restored after."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> nn.Module:
        return self.module.eval()

    def __exit__(self, *exc_info: object) -> None:
        self.module.train(self.was_training)
