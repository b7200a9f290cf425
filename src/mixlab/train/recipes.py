"""Named, versioned training recipes (package data `mixlab/recipes/*.json`) and how a model picks one.

A recipe is a flat JSON object: optimizer, lr (+ `lr_base_batch_size` for linear scaling), schedule, epochs,
batch size, regularisation and augmentation. `auto` = `paper` for the faithful `*_paper` isotropic models,
`dianet` for ResNet / DIA-ResNet / DIA-WRN, `mixlab` otherwise.
"""
import json
from importlib import resources
from pathlib import Path

REQUIRED = ("name", "version", "description", "source", "optimizer", "lr", "batch_size", "epochs", "schedule")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "multistep")
DIANET_PREFIXES = ("resnet", "dia_resnet", "dia_wrn", "wrn", "preresnet", "dia_preresnet")


def list_recipes():
    """Names of the recipes shipped with mixlab, sorted."""
    return sorted(p.name[:-5] for p in resources.files("mixlab").joinpath("recipes").iterdir()
                  if p.name.endswith(".json"))


def load_recipe(name_or_path):
    """A recipe dict by name ('paper', 'dianet', 'mixlab') or from a JSON file path; validated."""
    path = Path(str(name_or_path))
    if path.suffix == ".json" and path.exists():
        text = path.read_text()
    else:
        if name_or_path not in list_recipes():
            raise ValueError(f"unknown recipe {name_or_path!r}; choose auto, {', '.join(list_recipes())} "
                             f"or a path to a recipe .json")
        text = resources.files("mixlab").joinpath("recipes", f"{name_or_path}.json").read_text()
    recipe = json.loads(text)
    missing = [k for k in REQUIRED if k not in recipe]
    if missing:
        raise ValueError(f"recipe {name_or_path!r} lacks {', '.join(missing)}")
    if recipe["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"recipe optimizer must be one of {OPTIMIZERS}, got {recipe['optimizer']!r}")
    if recipe["schedule"] not in SCHEDULES:
        raise ValueError(f"recipe schedule must be one of {SCHEDULES}, got {recipe['schedule']!r}")
    return recipe


def auto_recipe_name(model_name):
    """The recipe `auto` stands for: faithful paper configs get their paper's recipe."""
    if model_name.endswith("_paper"):
        return "paper"
    if model_name.startswith(DIANET_PREFIXES):
        return "dianet"
    return "mixlab"


def resolve_recipe(recipe, model_name):
    return load_recipe(auto_recipe_name(model_name) if recipe in (None, "auto") else recipe)
