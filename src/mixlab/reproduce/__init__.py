"""Paper tables regenerated beside the published numbers: `reproduce("ninformer", seeds=3)`.

tables.py  which models / datasets / recipe each table trains, and the published numbers (package data)
report.py  pure aggregation (mean ± std over seeds), published lookup, diff, claims, markdown
runner.py  the plan on disk (OUT/<dataset>/<model>/seed<k>), resume, skip missing data, write the report
"""
from .report import build_row, check_claims, mean_std, render_markdown
from .runner import default_out, plan, reproduce, resolve_datasets, scaled_milestones
from .tables import TABLES, get_table, load_published, lookup_published

__all__ = ["TABLES", "build_row", "check_claims", "default_out", "get_table", "load_published",
           "lookup_published", "mean_std", "plan", "render_markdown", "reproduce", "resolve_datasets",
           "scaled_milestones"]
