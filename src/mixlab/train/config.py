"""`TrainConfig`: what a run was asked for. Unset (None) fields take the recipe's value; the resolved
hyper-parameters (`resolve`) are what the run directory records and what a resume must agree with."""
import dataclasses
import json
import os
from dataclasses import dataclass, field

from .recipes import resolve_recipe

# Fields that change the numbers a run produces: a resume must agree on them (epochs may grow).
RESULT_FIELDS = ("model", "data", "recipe", "batch_size", "lr", "subset", "seed", "model_kwargs", "overrides")


@dataclass
class TrainConfig:
    model: str = None
    data: str = None
    recipe: str = "auto"            # auto | paper | dianet | mixlab | path/to/recipe.json
    epochs: int = None              # None: the recipe's
    batch_size: int = None          # global batch (split over DDP ranks); None: the recipe's
    lr: float = None                # None: the recipe's, scaled linearly with the batch if it says so
    subset: int = None              # stratified N training images, at most N test images
    device: str = "auto"            # auto | cpu | cuda | cuda:1
    out: str = None                 # run directory; None: runs/<model>-<data>-<timestamp>
    resume: str = None              # run directory to continue
    compile: bool = False
    seed: int = 0
    data_dir: str = None
    model_kwargs: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)   # any other recipe key, e.g. {"ema_decay": 0.999}
    eval_batch_size: int = 1000
    log_every: int = 50             # steps between non-finite-loss checks (one device sync each)

    def to_dict(self):
        return dataclasses.asdict(self)


def resolve(config, train_size=None, world_size=1):
    """The hyper-parameters this run uses: recipe values, overridden by whatever the config sets.

    A batch larger than the training set (a small --subset) is capped to the largest multiple of the
    process count that fits, before the learning rate is scaled with it, and the cap is recorded.
    """
    if not config.model or not config.data:
        raise ValueError("both a model (--model) and a dataset (--data) are needed to train")
    recipe = dict(resolve_recipe(config.recipe, config.model))
    unknown = set(config.overrides) - set(recipe)
    if unknown:
        raise ValueError(f"unknown recipe key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(recipe))}")
    recipe.update(config.overrides)
    batch = int(config.batch_size or recipe["batch_size"])
    epochs = int(config.epochs if config.epochs is not None else recipe["epochs"])
    if batch < 1 or epochs < 1:
        raise ValueError(f"batch size and epochs must be positive, got {batch} and {epochs}")
    if config.subset is not None and config.subset < 1:
        raise ValueError(f"subset must be a positive number of images, got {config.subset}")
    if train_size is not None and batch > train_size:
        capped = train_size // world_size * world_size
        if capped < 1:
            raise ValueError(f"{train_size} training images cannot feed {world_size} processes")
        recipe["batch_size_capped_from"] = batch
        batch = capped
    if config.lr is not None:
        lr = float(config.lr)
    elif recipe.get("lr_base_batch_size"):
        lr = recipe["lr"] * batch / recipe["lr_base_batch_size"]
    else:
        lr = recipe["lr"]
    recipe.update(batch_size=batch, epochs=epochs, lr=lr)
    return recipe


def check_resume_matches(saved, config):
    """Refuse to resume with settings that would change the results (one clear line)."""
    for key in RESULT_FIELDS:
        asked, had = getattr(config, key), saved.get(key)
        if key == "recipe" and asked in (None, "auto"):
            continue
        if key in ("model_kwargs", "overrides") and not asked:
            continue
        if key == "seed" and asked == 0 and had not in (None, 0):
            continue   # 0 is the default; treat it as unset
        if asked is not None and json.dumps(asked) != json.dumps(had):
            raise ValueError(f"cannot resume: the run was trained with {key}={had!r}, not {asked!r}")


def merge_for_resume(saved, config):
    """The saved training config with this call's epochs/device/compile/out, for `--resume DIR`."""
    merged = TrainConfig(**{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    merged.epochs = config.epochs if config.epochs is not None else saved.get("epochs")
    merged.device, merged.compile = config.device, config.compile
    merged.out = config.out or config.resume
    merged.resume = config.resume
    if config.data_dir:
        merged.data_dir = config.data_dir
    return merged


def default_out(config):
    import time
    data = os.path.basename(os.path.normpath(str(config.data)))
    return os.path.join("runs", f"{config.model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}")
