"""The coupling (dependency) analyzer: which weight axes must shrink together, driven by per-op rules.

    result = analyze_coupling(graph)        # cached on the graph
    print(format_groups(result))

Rules live in ``rules_*.py`` (one file per op family) and register with :func:`coupling_rule`; see
DESIGN.md section 2 for what they must capture.
"""

from .analyze import CouplingResult, analyze_coupling, compute_coupling
from .groups import CouplingGroup, GroupMember
from .repeated_blocks import find_repeated_blocks, trace_repeated_blocks
from .report import format_groups, groups_as_dicts
from .reshape_blocks import reshape_groups
from .rules import coupling_rule

__all__ = [
    "CouplingResult",
    "CouplingGroup",
    "GroupMember",
    "analyze_coupling",
    "compute_coupling",
    "format_groups",
    "groups_as_dicts",
    "reshape_groups",
    "coupling_rule",
    "trace_repeated_blocks",
    "find_repeated_blocks",
]
