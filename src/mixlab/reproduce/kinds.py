"""Table kinds: what makes a paper table's report, beyond the runs every table trains the same way.

`reproduce()` (runner.py) plans and trains the grid of runs (dataset × model × seed) for every table alike; a
table's kind (`TableSpec.task`) decides the rest, through one interface:

    extra_runs()            runs the kind plans besides the grid (listed by --dry-run), e.g. FID classifiers
    plan_rows()             rows the plan (--dry-run) shows before anything trains (default: none)
    data_probe(data_dir)    a static method: the probe that finds the table's datasets (None: the data package's)
    rows(results, failed)   the report's result fields from the finished runs: always "rows"; a kind may add
                            its own ("plot", "fid"); a failure of its own steps is appended to `failed`
    claims(rows)            the report's verdict fields: always "claims"; a kind may add its own ("questions")
    markdown(report)        the table as GitHub markdown
    metric                  what a row's number is, in words (the report's "metric")

The constructor receives the `TableJob` (the planned table: spec, options, datasets, runs) and refuses, before
anything trains, options the kind cannot honour. `KINDS` names each kind's class by import path, so only the
kind a table needs is imported: a new kind of table (segmentation, compare) is one module and one line here.
"""
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .tables import TableSpec

KINDS: dict[str, str] = {
    "classification": "mixlab.reproduce.report:ClassificationTable",
    "diffusion": "mixlab.reproduce.diffusion:DiffusionTable",
    "segmentation": "mixlab.reproduce.segmentation:SegmentationTable",
}


@dataclass
class ReproduceOptions:
    """How a table is reproduced (every keyword of `reproduce` but the table's name)."""
    datasets: str | Sequence[str] | None = None   # the table's datasets to run (comma list); None: all
    models: str | Sequence[str] | None = None     # the table's rows to run; None: all
    seeds: int = 1
    epochs: int | None = None          # a budget: None runs the recipe's (per-model) length
    recipe: str | None = None          # None: the table's own recipe
    out: str | Path | None = None      # None: runs/reproduce/<table>[-recipe][-key=value…]
    subset: int | None = None
    device: str = "auto"
    batch_size: int | None = None
    data_dir: str | None = None
    compile: bool | None = None       # None: auto (train.autocompile)
    dry_run: bool = False              # plan only: the report's run list, nothing trained or written
    json_path: str | Path | None = None       # extra copies of OUT/<table>.json and OUT/<table>.md
    markdown_path: str | Path | None = None
    overrides: dict | None = None      # recipe keys (`--set`), over the table's own per-model/dataset keys
    plot: bool = False                 # classification: top-1 against forward FLOPs (PNG)
    command: str | None = None         # the command line, recorded in the report
    log: Callable[[str], None] = print
    train_fn: Callable | None = None   # None: the engine's `train`
    probe: Callable[[str], None] | None = None   # raises when a dataset is absent; None: a test-split load
    cost_fn: Callable | None = None    # (model, dataset) -> (cost, unit) for the plot; None: bench FLOPs
    fid: str = "auto"                  # diffusion: auto | inception | classifier feature space
    fid_samples: int | None = None     # diffusion: samples per run scored (None: reproduce.diffusion's)
    launcher: Any = None               # reproduce.launch launcher; None: one run after another here
    trackers: tuple = ()               # mixlab.track names every run logs to
    overwrite: bool = False            # train again a directory holding another request's run


@dataclass
class PlannedRun:
    """One run of a table's grid, with its status on disk."""
    model: str            # the table's row label (a registered model, or a variant of one)
    dataset: str          # ours (e.g. cifar10-jpeg)
    seed: int
    path: Path
    epochs: int
    overrides: dict = field(default_factory=dict)
    status: str = "new"   # new | partial | done | foreign
    arch: str | None = None          # the registered model the row trains (None: `model` itself)
    model_kwargs: dict = field(default_factory=dict)
    recipe_epochs: int | None = None  # the recipe's own length for this model (a shorter run is a budget)


@dataclass
class TableJob:
    """A planned table, as every kind sees it. `options` is the `ReproduceOptions` the table was asked with;
    `train_fn` is set (the engine's `train` unless the options name another) once training is to happen."""
    table: str
    spec: TableSpec
    options: ReproduceOptions
    out: Path
    found: list[tuple[str, str]]          # (paper's dataset, ours) of the datasets available here
    models: tuple[str, ...]               # row labels, in the table's order
    recipe: str                           # as asked (a name or a recipe file)
    recipe_name: str
    overrides: dict
    runs: list[PlannedRun]
    skipped: list[dict]
    train_fn: Callable | None = None

    def recipe_epochs(self, model: str) -> int | None:
        """The recipe's own epochs for a row (the budget marker compares a run's epochs with it)."""
        return next((r.recipe_epochs for r in self.runs if r.model == model), None)


class TableKind(ABC):
    """The interface of a table kind (see the module's docstring)."""
    metric: str = ""

    def __init__(self, job: TableJob) -> None:
        self.job = job

    def extra_runs(self) -> list[dict]:
        """Runs besides the grid, as entries of the report's run list (none unless the kind has its own)."""
        return []

    def plan_rows(self) -> dict:
        """Fields the plan (--dry-run) adds, e.g. every row with its published number (none by default)."""
        return {}

    @staticmethod
    def data_probe(data_dir) -> Callable[[str], None] | None:
        """(name) -> None, raising when the dataset is absent; None: the data package's test-split load."""
        return None

    @abstractmethod
    def rows(self, results: dict, failed: list[dict]) -> dict:
        """{"rows": [...], …} from `results` ({(model, dataset): [summary per finished seed]})."""

    @abstractmethod
    def claims(self, rows: list[dict]) -> dict:
        """{"claims": [...], …}: the table's claims checked against the rows."""

    @abstractmethod
    def markdown(self, report: dict) -> str:
        """The report (rows, claims, failed, skipped, …) as GitHub markdown."""


def table_kind(name: str) -> type[TableKind]:
    """The class of a table kind named in `KINDS`, imported on first use."""
    if name not in KINDS:
        raise ValueError(f"unknown table kind {name!r}; choose one of {', '.join(sorted(KINDS))}")
    module, _, attr = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
