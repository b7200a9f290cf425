"""Diffusion: the DDPM process around mixlab's UNet, sample grids and Fréchet distances.

diffusers (the noise scheduler) and torchmetrics (the Fréchet distance) are optional dependencies: they are
imported when a `DDPMProcess` or a `FrechetDistance` is built, not when this package is imported.
"""
from .ddpm import DDPMProcess, derived_seed, step_generator, to_model_range, to_uint8
from .fid import INCEPTION_SPACE, ClassifierFeatures, FrechetDistance, frechet_distance, inception_status
from .grid import image_grid, save_grid

__all__ = ["DDPMProcess", "derived_seed", "step_generator", "to_model_range", "to_uint8", "INCEPTION_SPACE",
           "ClassifierFeatures", "FrechetDistance", "frechet_distance", "inception_status", "image_grid",
           "save_grid"]
