"""A planned run's status on disk, in the plan's words (shared by the runner and the table kinds' own runs)."""
from pathlib import Path

from ..rundir import RunDir


def run_status(path: str | Path) -> str:
    """done (a finished run), partial (a run to resume), new (nothing there yet) or foreign (not a run)."""
    return {"missing": "new", "empty": "new", "partial": "partial", "finished": "done",
            "foreign": "foreign"}[RunDir(path).status()]
