"""The canonical op set of the IR.

Nodes follow ONNX operator semantics (default domain, at the graph's opset), so the ONNX backend is
nearly a printer and an ONNX frontend is nearly a reader. Two macro ops of the ``graphpress`` domain
keep structure that passes care about and ONNX would scatter over several nodes:

``graphpress::Linear(X, W, B?)``
    ``Y = X @ W^T + B`` with ``W`` shaped ``[out_features, in_features]`` (torch's layout). Frontends turn
    ``aten.linear``, ``Gemm(transB=1)`` and ``MatMul`` by a constant matrix into it, so every pass sees one
    form of "a fully connected layer".
``graphpress::Attention(Q, K, V, mask?)``
    Scaled dot-product attention over ``[batch, heads, seq, head_dim]`` tensors, attributes ``scale``
    (float or absent for 1/sqrt(head_dim)) and ``is_causal`` (0/1). K and V may have fewer heads than Q
    (grouped-query attention); each K/V head then serves ``q_heads / kv_heads`` consecutive query heads.

The op categories below are what analyses key their rules on.
"""

from __future__ import annotations

__all__ = [
    "GRAPHPRESS_DOMAIN",
    "MACRO_OPS",
    "ELEMENTWISE_UNARY",
    "ELEMENTWISE_BINARY",
    "ELEMENTWISE_VARIADIC",
    "is_elementwise",
]

GRAPHPRESS_DOMAIN = "graphpress"

MACRO_OPS = frozenset({"Linear", "Attention"})

ELEMENTWISE_UNARY = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Tanh", "Softplus", "Softsign", "Mish", "Swish", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs",
        "Sin", "Cos", "Erf", "Floor", "Ceil", "Round", "Sign", "Not", "Identity", "Cast", "Clip", "Dropout",
        "IsNaN", "IsInf", "ThresholdedRelu",
    }
)
ELEMENTWISE_BINARY = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Less", "Greater", "LessOrEqual",
     "GreaterOrEqual", "And", "Or", "Xor", "Mod", "Where", "BitShift"}
)
ELEMENTWISE_VARIADIC = frozenset({"Sum", "Mean", "Max", "Min"})


def is_elementwise(op: str, domain: str = "") -> bool:
    """True for ops whose output element i depends only on input element i (after broadcasting)."""
    return domain == "" and (op in ELEMENTWISE_UNARY or op in ELEMENTWISE_BINARY or op in ELEMENTWISE_VARIADIC)
