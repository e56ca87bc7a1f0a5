"""Write your own pass in about 30 lines, register it, and use it in a pipeline string.

    python examples/custom_pass.py
"""

from __future__ import annotations

import torch

import graphpress
from graphpress.passes import Option, Pass, PassResult, register_pass


@register_pass
class ScaleDown(Pass):
    """Scale every Linear's weight by `factor` and every following bias to match (a toy, but a real edit)."""

    name = "scale-linear-weights"
    summary = "Multiply every Linear weight by a factor (demonstration pass)."
    options = (Option("factor", "float", 1.0, "multiplier", low=0.0, low_inclusive=False),)

    def call(self, graph, ctx):
        changed = 0
        for node in graph.nodes:
            if node.op == "Linear" and node.domain == "graphpress":
                weight = node.input(1).param
                weight.data = weight.data * self.opts["factor"]  # edits the user's module copy too
                changed += 1
        return PassResult(graph, changed > 0, {"linears_scaled": changed})


def main() -> int:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(2, 8)
    out, report = graphpress.optimize(model, "scale-linear-weights{factor=0.5},dce", example_inputs=(x,),
                                      return_report=True)
    print(report.table())
    assert torch.allclose(out[0].weight, model[0].weight * 0.5)
    print("registered passes now include:", "scale-linear-weights" in graphpress.list_passes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
