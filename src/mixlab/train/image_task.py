"""What the image tasks (classification, diffusion) share: their data and their model, read and built the way
the engine always did — an `ImageDataset` / `FileDataset` per split (`data_setup.prepare_data`), the
device-resident or streaming loader, the recipe resolved against the training split's size, and the model
`create_model(config.model, …)` with the data-decided keys (`model_kwargs`) and the recipe's stochastic depth.

A task owns its data (`run_data`) and its model (`build_model`); the dense tasks (`mixlab.dense.task`) read
their own folders and build a backbone + head instead, and the engine asks each the same two questions.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from .config import resolve

STRONG_KEYS = ("mixup", "cutmix", "randaugment", "random_erasing")


@dataclass
class TaskData:
    """What a task's data gives the engine: both splits, the training loader, the resolved recipe, the
    normalisation, the data path taken, and the data's part of config.json (`meta`)."""
    train: Any
    test: Any
    loader: Any
    recipe: Any
    mean: list
    std: list
    path: str
    meta: dict


def refuse_strong_augmentation(task_name, model, recipe):
    """The strong augmentation keys are for classifiers: a one-line refusal for any other task."""
    if task_name != "classification" and any(getattr(recipe, k) for k in STRONG_KEYS):
        raise ValueError(f"{model} learns {task_name}: the strong augmentation keys (randaugment, "
                         f"random_erasing, mixup, cutmix) are for classifiers")


class ImageTask(ABC):
    """`run_data` and `build_model` of the tasks that learn from an image dataset (module docstring)."""

    name = "classification"

    @abstractmethod
    def model_kwargs(self, train_ds) -> dict:
        """What the training split decides about the model (e.g. classes, channels, image size)."""

    def run_data(self, config, d, device, saved_recipe, log) -> TaskData:
        from .data_setup import make_train_loader, normalisation, prepare_data

        # the recipe's image keys decide how the data is read; its batch (capped to the data) is settled below
        data = prepare_data(config, resolve(config, world_size=d.world_size, saved_recipe=saved_recipe)[0],
                            device, log)
        train_ds, test_ds = data.train, data.test
        if list(train_ds.classes) != list(test_ds.classes):
            raise ValueError(f"{config.data}: the train and test splits name different classes "
                             f"({len(train_ds.classes)} vs {len(test_ds.classes)}); they must be the same list")
        recipe, note = resolve(config, train_size=len(train_ds), world_size=d.world_size, saved_recipe=saved_recipe)
        if note:
            log(note)
        # what the run resolved is what it records: a resume, `mixlab eval` and `predict` read it back
        recipe = dataclasses.replace(recipe, img_size=data.transform.img_size, crop_pct=data.transform.crop_pct)
        if recipe.batch_size % d.world_size:
            raise ValueError(f"batch size {recipe.batch_size} does not split over {d.world_size} processes")
        refuse_strong_augmentation(self.name, config.model, recipe)
        c, h, _ = train_ds.image_size
        mean, std = normalisation(recipe.normalize, train_ds)
        loader = make_train_loader(data, recipe, recipe.batch_size // d.world_size, device, mean, std, config.seed,
                                   d.rank, d.world_size)
        meta = dict(mean=mean, std=std, class_names=list(train_ds.classes), dataset=train_ds.name, in_chans=c,
                    img_size=h, lossy=bool(train_ds.lossy), data_source=train_ds.source, data_path=data.path,
                    eval_transform=data.transform.record(c, mean, std) if data.transform.img_size else None)
        return TaskData(train_ds, test_ds, loader, recipe, mean, std, data.path, meta)

    def build_model(self, config, recipe, data, log):
        from .. import create_model
        # a wrong or ill-typed model keyword is a one-line ValueError from create_model, listing the valid ones
        kwargs = {**self.model_kwargs(data.train), **stochastic_depth(config, recipe, log), **config.model_kwargs}
        return create_model(config.model, **kwargs)


def stochastic_depth(config, recipe, log):
    """{drop_path_rate: the recipe's} for a model that has stochastic depth (and no --model-kwargs value)."""
    rate = recipe.drop_path_rate
    if rate is None or "drop_path_rate" in config.model_kwargs:
        return {}
    from .data_setup import model_accepts
    if model_accepts(config.model, None, 3, {"drop_path_rate": rate}) is None:
        return {"drop_path_rate": rate}
    log(f"{config.model} has no stochastic depth: the recipe's drop_path_rate {rate:g} is not used")
    return {}
