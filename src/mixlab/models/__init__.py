"""Model families; importing this module registers every named config."""
from . import isotropic_configs, affnet, dia, demo_configs, hierarchical, unet  # noqa: F401  (registration side effects)
from .isotropic import IsotropicNet

__all__ = ["IsotropicNet"]
