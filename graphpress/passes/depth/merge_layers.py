"""``merge-layers{ratio|layers, method=come|laco}``: fold decoder layers into their neighbours, progressively.

Two ways to remove depth while keeping what the removed layers knew:

* ``come`` (CoMe, "Layer as Puzzle Pieces"): repeatedly take the adjacent pair ``(l, l+1)`` whose joint
  effect on the residual stream is smallest (highest ``cos(x_l, x_{l+2})`` on calibration data) and
  concatenate the most sensitive KV groups and MLP channels of both into one layer (concat_merge.py).
  Each merge removes one layer's worth of parameters; the hidden states are recomputed after each.
* ``laco`` (LaCo's Reserving-Differences-while-Seeking-Common layer collapse): ``theta_l += sum_k
  (theta_{l+k} - theta_l)`` for ``k = 1..span`` and layers ``l+1..l+span`` are dropped. Every position is
  tried on calibration data and the one whose final hidden states stay closest (cosine) to the
  original model's is kept if that cosine stays >= ``min_cosine`` (LaCo's acceptance threshold); if no
  position passes, shorter spans are tried, and merging stops early when even one layer cannot go.

Merged layers record the original layers they replace in ``config.graphpress_layer_map`` (for
``distill``), and the config, layer indices and per-layer widths stay consistent (hf_layers.py).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...errors import PassError
from ...ir import Graph
from ..base import Pass, PassResult
from ..context import PassContext
from ..options import Option
from ..registry import register_pass
from .activations import (
    Hidden,
    LayerInputs,
    boundary_states,
    calibration_inputs,
    capture_layer_inputs,
    mean_token_cosine,
    run_layer,
)
from .budget import layers_to_remove, parameter_count
from .concat_merge import channel_sensitivity, concat_merge
from .hf_layers import check_llama_layer, decoder_layers, drop_layers, layer_map

__all__ = ["MergeLayers", "laco_collapse"]


def _merge_spans(spans: list[list[int]], first: int, last: int) -> list[list[int]]:
    """Spans after layers ``first..last`` became one layer."""
    return spans[:first] + [[spans[first][0], spans[last][1]]] + spans[last + 1:]


@torch.no_grad()
def laco_collapse(layers: list[nn.Module]) -> nn.Module:
    """A new layer with ``theta_0 + sum_k (theta_k - theta_0)`` over ``layers`` (all of one shape)."""
    merged = copy.deepcopy(layers[0])
    base = dict(layers[0].named_parameters())
    for other in layers[1:]:
        other_params = dict(other.named_parameters())
        for name, param in merged.named_parameters():
            if name not in other_params or other_params[name].shape != param.shape:
                raise PassError(f"LaCo needs layers of one shape; '{name}' differs between the layers merged")
            param.add_(other_params[name] - base[name])
    return merged


class _ProgressiveMerger:
    """State of a progressive merge: the model's layers, the calibration inputs and the residual stream."""

    def __init__(self, model: nn.Module, inputs: LayerInputs):
        self.model = model
        self.inputs = inputs
        _, self.layers = decoder_layers(model)
        self.states = boundary_states(self.layers, inputs)
        self.reference_output = self.states[-1]

    def refresh_from(self, index: int) -> None:
        """Recompute the residual stream after layer ``index`` changed (earlier states are unchanged)."""
        _, self.layers = decoder_layers(self.model)
        self.states = self.states[:index] + boundary_states(self.layers, self.inputs, index, self.states[index])

    def output_cosine_with(self, first: int, last: int, replacement: nn.Module) -> float:
        """Final-output cosine to the original model if layers ``first..last`` were ``replacement``."""
        hidden: Hidden = run_layer(replacement, self.states[first], self.inputs.calls)
        for layer in self.layers[last + 1:]:
            hidden = run_layer(layer, hidden, self.inputs.calls)
        return mean_token_cosine(hidden, self.reference_output)

    def come_step(self) -> dict:
        """Merge the most similar adjacent pair by concatenation."""
        similarity = [mean_token_cosine(self.states[i], self.states[i + 2]) for i in range(len(self.layers) - 1)]
        first = max(range(len(similarity)), key=similarity.__getitem__)
        layer_a, layer_b = self.layers[first], self.layers[first + 1]
        sens_a = channel_sensitivity(layer_a, self.states[first], self.inputs.calls)
        sens_b = channel_sensitivity(layer_b, self.states[first + 1], self.inputs.calls)
        concat_merge(layer_a, layer_b, sens_a, sens_b)
        self._commit(first, first + 1)
        return {"layers": [first, first + 1], "pair_cosine": round(similarity[first], 5)}

    def laco_step(self, span: int, min_cosine: float) -> dict | None:
        """Collapse the consecutive layers whose collapse keeps the output closest, or None if none passes.

        LaCo's acceptance rule: a collapse is taken only if the output cosine stays at or above
        ``min_cosine``; when no position passes with ``span`` following layers, shorter spans are tried.
        """
        for length in range(span, 0, -1):
            best: tuple[float, int, nn.Module] | None = None
            for first in range(len(self.layers) - length):
                candidate = laco_collapse(list(self.layers[first:first + length + 1]))
                cosine = self.output_cosine_with(first, first + length, candidate)
                if best is None or cosine > best[0]:
                    best = (cosine, first, candidate)
            cosine, first, candidate = best
            if cosine >= min_cosine:
                self.layers[first].load_state_dict(candidate.state_dict())
                self._commit(first, first + length)
                return {"layers": list(range(first, first + length + 1)), "output_cosine": round(cosine, 5)}
        return None

    def _commit(self, first: int, last: int) -> None:
        spans = _merge_spans(layer_map(self.model), first, last)
        drop_layers(self.model, range(first + 1, last + 1), spans)
        self.refresh_from(first)


@register_pass
class MergeLayers(Pass):
    name = "merge-layers"
    summary = "Merge adjacent decoder layers (CoMe concatenation or LaCo collapse), progressively."
    options = (
        Option("ratio", "float", None, "fraction of decoder-layer parameters to remove (nearest whole layers)",
               low=0.0, high=1.0, high_inclusive=False),
        Option("layers", "int", None, "number of decoder layers to remove (instead of ratio)", low=0),
        Option("method", "str", "come", "come = concatenate sensitive channels; laco = parameter-difference "
               "collapse", choices=("come", "laco")),
        Option("samples", "int", 4, "calibration sequences used to choose and check merges", low=1),
        Option("span", "int", 3, "laco: following layers collapsed into one per step (LaCo's C - 1)", low=1),
        Option("min_cosine", "float", 0.65, "laco: accept a collapse only if the final hidden states keep this "
               "cosine to the original's (else try shorter spans, then stop)",
               low=-1.0, high=1.0),
    )
    origins = frozenset({"torch"})
    needs_calibration = True
    retraces = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        model = graph.module
        _, layers = decoder_layers(model)
        for index, layer in enumerate(layers):
            check_llama_layer(layer, index)
        count = layers_to_remove(self.name, list(layers), self.opts["ratio"], self.opts["layers"])
        if count == 0:
            return PassResult(graph, False, {"layers_removed": 0})
        params_before = parameter_count(list(layers))
        merger = _ProgressiveMerger(model, capture_layer_inputs(model, calibration_inputs(ctx, self.opts["samples"])))
        steps, removed = [], 0
        while removed < count:
            if self.opts["method"] == "come":
                step = merger.come_step()
            else:
                step = merger.laco_step(min(self.opts["span"], count - removed), self.opts["min_cosine"])
                if step is None:
                    break
            steps.append(step)
            removed += len(step["layers"]) - 1
        _, layers = decoder_layers(model)
        return PassResult(graph, removed > 0, {
            "layers_removed": removed,
            "merges": steps,
            "layer_map": layer_map(model),
            "decoder_params_removed_fraction": round(1 - parameter_count(list(layers)) / params_before, 4),
            "stopped_early": removed < count,
        })
