"""Paper tables regenerated beside the published numbers: `reproduce("ninformer", seeds=3)`.

tables.py    which models / datasets / recipe each table trains, its kind, and the published numbers (package data)
runner.py    `reproduce()`: the grid of runs on disk (OUT/<dataset>/<model>/seed<k>), resume through
             mixlab.decision, skip missing data, then the table's kind, and write the report
kinds.py     the table-kind interface (extra runs, rows, claims, markdown) and `KINDS`, name -> implementation
report.py    the classification kind (final-epoch top-1 beside the published numbers) and the shared aggregation
diffusion.py the diffusion kind (Fréchet distances of samples, the FID feature classifiers)
status.py    a planned run's status on disk;  launch.py  launchers (sequential, local pool, Ray);
sweep.py     recipe grids;  plot.py  top-1 against forward FLOPs
"""
from .kinds import KINDS, TableKind, table_kind
from .report import build_row, check_claims, mean_std, render_markdown
from .runner import ReproduceOptions, default_out, plan, reproduce, resolve_datasets, scaled_milestones
from .tables import TABLES, get_table, load_published, lookup_published

__all__ = ["KINDS", "ReproduceOptions", "TABLES", "TableKind", "build_row", "check_claims", "default_out",
           "get_table", "load_published", "lookup_published", "mean_std", "plan", "render_markdown", "reproduce",
           "resolve_datasets", "scaled_milestones", "table_kind"]
