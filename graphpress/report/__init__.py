"""HTML reports with PNG charts: what a pipeline did to each layer, and what the coupling analysis found."""

from .html import write_groups_report, write_pipeline_report

__all__ = ["write_pipeline_report", "write_groups_report"]
