"""graphpress IR: values with shapes and dtypes, nodes in ONNX semantics plus two macro ops, parameters
bound to their source, a verifier, a printer and a networkx view."""

from .graph import Graph
from .node import Node
from .nx_view import to_networkx
from .ops import GRAPHPRESS_DOMAIN, is_elementwise
from .parameter import (
                        Binding,
                        DetachedBinding,
                        EvaluatedBinding,
                        ModuleBinding,
                        Parameter,
                        TransposedBinding,
                        model_sources,
                        storage_binding,
                        transposed_binding,
)
from .printer import format_graph, format_node
from .value import SHAPED_LIKE, SIDE_OUTPUT, Dim, Shape, Value
from .verifier import verify

__all__ = [
    "Graph",
    "Node",
    "Value",
    "SHAPED_LIKE",
    "SIDE_OUTPUT",
    "Dim",
    "Shape",
    "Parameter",
    "Binding",
    "DetachedBinding",
    "EvaluatedBinding",
    "ModuleBinding",
    "TransposedBinding",
    "model_sources",
    "storage_binding",
    "transposed_binding",
    "GRAPHPRESS_DOMAIN",
    "is_elementwise",
    "verify",
    "format_graph",
    "format_node",
    "to_networkx",
]
