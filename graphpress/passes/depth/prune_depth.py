"""``prune-depth{ratio|layers, metric=bi}``: drop the decoder layers that change the residual stream least.

ShortGPT's block influence of layer ``i`` is ``BI_i = 1 - E_t[cos(x_i, x_{i+1})]`` over calibration tokens:
a layer whose output points where its input pointed does little, and removing it costs little. All scores
are taken on the unpruned model in one pass (ShortGPT's recipe); the ``k`` lowest go. The dropped layers'
work is recorded as absorbed by the kept layer before them (``graphpress_layer_map``), which is what
``distill`` trains that layer to reproduce.
"""

from __future__ import annotations

from torch import nn

from ...ir import Graph
from ..base import Pass, PassResult
from ..context import PassContext
from ..options import Option
from ..registry import register_pass
from .activations import boundary_states, calibration_inputs, capture_layer_inputs, mean_token_cosine
from .budget import layers_to_remove, parameter_count
from .hf_layers import decoder_layers, drop_layers, layer_map

__all__ = ["PruneDepth", "block_influence"]


def block_influence(model: nn.Module, batches: list[dict]) -> list[float]:
    """``BI_i`` of every decoder layer of ``model`` on the calibration ``batches``."""
    _, layers = decoder_layers(model)
    states = boundary_states(layers, capture_layer_inputs(model, batches))
    return [1.0 - mean_token_cosine(states[i], states[i + 1]) for i in range(len(layers))]


@register_pass
class PruneDepth(Pass):
    name = "prune-depth"
    summary = "Remove whole decoder layers with the lowest ShortGPT block influence (needs calibration)."
    options = (
        Option("ratio", "float", None, "fraction of decoder-layer parameters to remove (nearest whole layers)",
               low=0.0, high=1.0, high_inclusive=False),
        Option("layers", "int", None, "number of decoder layers to remove (instead of ratio)", low=0),
        Option("metric", "str", "bi", "layer importance: bi = ShortGPT block influence", choices=("bi",)),
        Option("samples", "int", 8, "calibration sequences used to score the layers", low=1),
    )
    origins = frozenset({"torch"})
    needs_calibration = True
    retraces = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        model = graph.module
        _, layers = decoder_layers(model)
        count = layers_to_remove(self.name, list(layers), self.opts["ratio"], self.opts["layers"])
        if count == 0:
            return PassResult(graph, False, {"layers_removed": 0})
        scores = block_influence(model, calibration_inputs(ctx, self.opts["samples"]))
        drop = sorted(sorted(range(len(layers)), key=scores.__getitem__)[:count])
        spans = layer_map(model)
        removed_params = parameter_count([layers[i] for i in drop])
        total_params = parameter_count(list(layers))
        drop_layers(model, drop)
        return PassResult(graph, True, {
            "layers_removed": count,
            "removed_original_layers": [spans[i][0] for i in drop],
            "block_influence": [round(s, 5) for s in scores],
            "decoder_params_removed_fraction": round(removed_params / total_params, 4),
        })
