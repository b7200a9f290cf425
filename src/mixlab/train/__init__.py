"""Training: `train(TrainConfig(model=..., data=...))` → run directory + summary; `evaluate`; recipes."""
from .config import TrainConfig
from ..device import pick_device
from .engine import train
from .guards import TrainingDiverged
from .evaluate import evaluate
from .recipes import auto_recipe_name, list_recipes, load_recipe
from .schedule import lr_at
from .tasks import evaluate_run

__all__ = ["TrainConfig", "TrainingDiverged", "train", "evaluate", "evaluate_run", "load_recipe", "list_recipes",
           "auto_recipe_name", "lr_at", "pick_device"]
