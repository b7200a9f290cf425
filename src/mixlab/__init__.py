"""mixlab: vision token mixers in one pluggable backbone — models, training, benchmarks, paper reproduction."""
__version__ = "0.1.0"

from .registry import create_model, list_models, model_cfg
from . import models  # noqa: F401  (registers every model, with mixlab and with timm; builds none)
from .checkpoint import load, save  # noqa: E402

__all__ = ["create_model", "list_models", "model_cfg", "load", "save", "__version__"]
