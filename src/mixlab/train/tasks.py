"""What a run learns: the task table, and what a task supplies to the engine.

The engine (engine.py) owns everything the learning problems share — the loop, the run directory, precision,
DDP, EMA, the non-finite guards and bit-exact resume. A task owns only what differs:

    name, best_metric, higher_is_better, metric_fields, watch_collapse     class attributes
    model_kwargs(train_ds)              what the data decides about the model (classes, channels, size)
    setup(run)                          check the built run and prepare; returns entries for config.json
    loss(run, x, y, step, scale)        Σ over the rank's samples of the per-sample loss × scale, and the
                                        batch's contribution to the epoch's training statistics
    train_row(totals)                   those statistics for metrics.csv
    evaluate(run, epoch)                the test metrics of the evaluated model (must hold "test_loss")
    after_commit(run, row)              anything written after an epoch is committed (e.g. sample grids);
                                        on resume it is called again for the last committed epoch
    summary(run, last, best)            the task's fields of summary.json
    run_data(config, d, device, saved_recipe, log)   both splits, the training loader, the resolved recipe,
                                        the normalisation and config.json's data part (`image_task.TaskData`)
    build_model(config, recipe, data, log)           the model the run trains (before .to(device))
    done_line(summary)                  the run's last line on the console
    evaluate_saved(run, config, ...)    score a finished run directory (`evaluate_run`, `mixlab eval`)

`TASKS` names each task's class by import path, so a task is imported only when a run needs it and the
engine imports none of the tasks' own modules: a model's registration names its task (cfg key `task`,
default classification), and a new task is one module plus one line here.
"""
import importlib
from typing import Any, Callable, Protocol

from ..registry import model_cfg
from ..rundir import RunDir

TASKS: dict[str, str] = {
    "classification": "mixlab.train.classification:ClassificationTask",
    "diffusion": "mixlab.diffusion.task:DenoisingTask",
    "segmentation": "mixlab.dense.segmentation:SegmentationTask",
    "detection": "mixlab.dense.detection:DetectionTask",
}


class Task(Protocol):
    """What the engine asks of a task (the module docstring says what each member means)."""
    name: str
    best_metric: str
    higher_is_better: bool
    metric_fields: tuple[str, ...]
    watch_collapse: bool
    evaluate_saved: Callable[..., dict]   # a static method: (run, config, data=None, split="test", …)

    def model_kwargs(self, train_ds: Any) -> dict: ...
    def run_data(self, config: Any, d: Any, device: Any, saved_recipe: Any, log: Any) -> Any: ...
    def build_model(self, config: Any, recipe: Any, data: Any, log: Any) -> Any: ...
    def setup(self, run: Any) -> dict: ...
    def loss(self, run: Any, x: Any, y: Any, step: int, scale: float) -> tuple: ...
    def train_row(self, totals: Any) -> dict: ...
    def evaluate(self, run: Any, epoch: int) -> dict: ...
    def after_commit(self, run: Any, row: dict) -> None: ...
    def summary(self, run: Any, last: dict, best: dict) -> dict: ...
    def done_line(self, summary: dict) -> str: ...


def task_class(task: str) -> type:
    """The class of a task named in `TASKS`, imported on first use."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    module, _, name = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), name)


def task_for(model_name: str, task: str | None = "auto") -> Task:
    """The task a model learns: the one asked (`--task`), or for `auto` the model's registered cfg (UNets
    denoise, the rest classify)."""
    if task in (None, "auto"):
        task = model_cfg(model_name).get("task", "classification")
    return task_class(task)()


def evaluate_run(run_dir, data=None, split="test", weights=None, device="cpu", data_dir=None, subset=None,
                 batch_size=1000) -> dict:
    """Score a run directory's default (`rundir.default_weights`, or `weights`) checkpoint on a split of its dataset (or `data`), at the
    precision the run trained with, as its task does: a classifier its loss and top-1, a diffusion run its test
    loss (top1 None)."""
    run = RunDir(run_dir)
    config = run.read_config(need=("mean", "std", "input_size"))
    # a dense run records its task; older runs (and image runs) go by the model's registration
    return task_for(config["model"], config.get("task") or "auto").evaluate_saved(run, config, data=data, split=split, weights=weights,
                                                    device=device, data_dir=data_dir, subset=subset,
                                                    batch_size=batch_size)
