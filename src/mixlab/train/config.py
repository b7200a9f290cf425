"""`TrainConfig`: what a run was asked for. Unset (None) fields take the recipe's value.

`resolve` turns it into the `Recipe` the engine runs (a separate, frozen value: the config keeps what was
asked, the recipe what was used; config.json records both). `check` rejects bad values in one line before
anything is loaded or written.
"""
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..registry import model_cfg
from .recipes import Recipe, resolve_recipe

DATA_PATHS = ("auto", "memory", "stream")
# Model arguments that the dataset decides; --model-kwargs may not set them.
DATA_DECIDED = ("num_classes", "in_chans", "img_size")


@dataclass
class TrainConfig:
    """What a run was asked for (the module docstring); a None field takes the recipe's value."""
    model: str | None = None
    data: str | None = None
    recipe: str = "auto"            # auto | paper | dianet | mixlab | path/to/recipe.json
    epochs: int | None = None       # None: the recipe's
    batch_size: int | None = None   # global batch (split over DDP ranks); None: the recipe's
    lr: float | None = None         # None: the recipe's, scaled linearly with the batch if it says so
    subset: int | None = None       # stratified N training images, at most N test images
    # N: hold out a stratified N of the training images (VALIDATION_SEED, the same for every run) and use them
    # as the evaluation split; the run trains on the rest and never sees the test set (lr selection)
    validation: int | None = None
    device: str = "auto"            # auto | cpu | cuda | cuda:1
    out: str | None = None          # run directory; None: runs/<model>-<data>-<timestamp>
    resume: str | None = None       # run directory to continue
    overwrite: bool = False         # replace a finished or unfinished run in `out`
    compile: bool | None = None     # torch.compile the steps: True / False pinned, None auto (train.autocompile)
    seed: int = 0
    data_dir: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)   # any other recipe key, e.g. {"ema_decay": 0.999}
    eval_batch_size: int = 1000
    log_every: int = 50             # steps between non-finite-loss checks (one device sync each)
    # --- where the images live (mixlab.data: device-resident or streamed from files) ---
    data_path: str = "auto"         # auto | memory | stream; the run records the path it took
    data_workers: int | None = None # DataLoader processes decoding files; None: 0 for small sets, else min(8, threads)
    trackers: tuple[str, ...] = ()  # experiment trackers fed from the run directory (mixlab.track): tensorboard, …
    # --- what the run learns ---
    task: str = "auto"              # auto (the model's registration) | classification | diffusion | segmentation | detection
    head: str | None = None         # dense tasks: the head on the backbone (None: the task's default)
    freeze_backbone: bool = False   # dense tasks: train the head only, on the backbone as initialised

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_int(value, what):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def check(config):
    """One-line errors for values no run can use (before any data is read or file written)."""
    for name in ("out", "resume"):   # '' is a typo or an unset variable, never "make one up for me"
        value = getattr(config, name)
        if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value).strip()):
            raise ValueError(f"--{name} {value!r} names no directory; give a run directory" +
                             (" or leave --out out for runs/<model>-<data>-<time>" if name == "out" else ""))
    if not config.resume:   # a resumed run takes its model and data from its config.json
        if not config.model or not isinstance(config.model, str):
            raise ValueError("a model is needed to train (--model; `mixlab models` lists them)")
        model_cfg(config.model)   # an unknown name fails here, with close matches, before any data is read
        if not config.data or not isinstance(config.data, str):
            raise ValueError("a dataset is needed to train (--data)")
    for name in ("epochs", "batch_size", "subset", "validation", "eval_batch_size", "log_every"):
        _positive_int(getattr(config, name), name.replace("_", " "))
    if config.data_path not in DATA_PATHS:
        raise ValueError(f"data path must be one of {', '.join(DATA_PATHS)}, got {config.data_path!r}")
    if config.data_workers is not None and (isinstance(config.data_workers, bool) or
                                            not isinstance(config.data_workers, int) or config.data_workers < 0):
        raise ValueError(f"data workers must be a non-negative integer, got {config.data_workers!r}")
    if config.lr is not None and (isinstance(config.lr, bool) or not isinstance(config.lr, (int, float))
                                  or not math.isfinite(config.lr) or config.lr <= 0):
        raise ValueError(f"learning rate must be a finite positive number, got {config.lr!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed!r}")
    if not isinstance(config.model_kwargs, dict):
        raise ValueError(f"model kwargs must be a JSON object, got {type(config.model_kwargs).__name__}")
    decided = [k for k in DATA_DECIDED if k in config.model_kwargs]
    if decided:
        raise ValueError(f"{', '.join(decided)} cannot be set in the model kwargs: the dataset decides them")
    if not isinstance(config.overrides, dict):
        raise ValueError("recipe overrides must be a mapping of recipe keys to values")
    if config.trackers:
        from ..track import check_trackers
        check_trackers(config.trackers)
    from .tasks import TASKS
    if config.task != "auto" and config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; choose auto or one of {', '.join(sorted(TASKS))}")
    if config.head is not None:
        from ..dense.spec import check_head
        check_head(config.task, config.head)
    if config.freeze_backbone and config.task not in ("segmentation", "detection"):
        raise ValueError("--freeze-backbone is for the dense tasks (--task segmentation or detection)")
    if config.resume and config.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")


def resolve(config, train_size=None, world_size=1, saved_recipe=None):
    """The `Recipe` this run uses: the recipe (or, on resume, the one the run recorded), overridden by
    whatever the config sets. A batch larger than the training set (a small --subset) is capped to the
    largest multiple of the process count that fits, before the learning rate is scaled with it.
    Returns (recipe, note) where note says what was capped, or None."""
    if saved_recipe is not None:
        base = Recipe.from_dict(saved_recipe, "the run's recorded recipe")
        recipe = base if config.epochs is None else base.replace(epochs=config.epochs, where="--epochs")
        return recipe, None
    recipe = resolve_recipe(config.recipe, config.model)
    recipe = recipe.replace(where="--set", **config.overrides)
    batch = config.batch_size or recipe.batch_size
    note = None
    if train_size is not None and batch > train_size:
        capped = train_size // world_size * world_size
        if capped < 1:
            raise ValueError(f"{train_size} training images cannot feed {world_size} processes")
        note = f"batch {batch} is larger than the {train_size} training images: using batch {capped}"
        batch = capped
    if config.lr is not None:
        lr = float(config.lr)
    elif recipe.lr_base_batch_size:
        lr = recipe.lr * batch / recipe.lr_base_batch_size
    else:
        lr = recipe.lr
    epochs = config.epochs if config.epochs is not None else recipe.epochs
    return dataclasses.replace(recipe, batch_size=batch, epochs=epochs, lr=lr), note


def default_out(config):
    import time
    data = os.path.basename(os.path.normpath(str(config.data)))
    return os.path.join("runs", f"{config.model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}")
