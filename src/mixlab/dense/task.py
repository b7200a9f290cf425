"""What the two dense tasks (segmentation.py, detection.py) share in the training engine (`mixlab.train.tasks`
lists what a task supplies): their data and their model.

Data (`run_data`): `--data` is a dense folder (VOC, ADE20K, COCO or images + masks; `read_dense`), read once
into memory, both splits. The image size S is the recipe's `img_size` (`--img-size`), else the images' own size
when they all share one square size, else the backbone's registered size. Training batches: a
RandomResizedCrop(S, scale=(SCALE_MIN, 1)) and a horizontal flip (if the recipe flips) of image and target
together; evaluation: Resize((S, S)); both through `DenseLoader`, whose draws are a pure function of (seed,
epoch, position), so resume is bit-exact and DDP ranks see exactly one process's batches. Normalisation: the
recipe's `normalize` ("dataset": the training split's per-channel statistics).

Model (`build_model`): `DenseModel(--model, task, --head, classes, S)`: the backbone is the classifier named by
--model (its --model-kwargs), under the head (`spec.HEADS`). config.json records task, head and the dense
block, so `--resume`, `mixlab eval`, `predict` and `export` rebuild the same model (`model.load_dense`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..train.config import resolve
from ..train.image_task import TaskData, refuse_strong_augmentation
from .loader import DenseLoader
from .model import DenseModel
from .readers import read_dense

SCALE_MIN = 0.5   # the random-resized crop keeps at least half the image's area: objects stay whole enough


def dense_root(data, data_dir=None):
    """The folder `--data` names: a path, a path under --data-dir, or a dataset name (ade20k, voc, coco)
    found under --data-dir / $MIXLAB_DATA (`readers.find_dense`)."""
    from .readers import NAMED, find_dense
    root = Path(str(data)).expanduser()
    if not root.is_dir() and str(data) in NAMED:
        return find_dense(str(data), data_dir)
    if not root.is_dir() and data_dir and (Path(data_dir) / str(data)).is_dir():
        root = Path(data_dir) / str(data)
    return root


def _take(ds, n):
    """The first n samples (a quick run's --subset; the readers' order is the split list's)."""
    return dataclasses.replace(ds, images=ds.images[:n], targets=ds.targets[:n], files=ds.files[:n])


def _stats(spec, ds):
    if spec in ("dataset", None):
        mean, std = ds.stats()
        return list(mean), list(std)
    mean, std = spec
    mean = [float(mean)] * 3 if isinstance(mean, (int, float)) else [float(m) for m in mean]
    std = [float(std)] * 3 if isinstance(std, (int, float)) else [float(s) for s in std]
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"normalize needs 3 means and 3 stds for RGB dense data, got {mean} / {std}")
    return mean, std


def _image_size(recipe, ds, model):
    from ..registry import model_cfg
    if recipe.img_size:
        return int(recipe.img_size)
    sizes = ds.sizes()
    if len(sizes) == 1 and sizes[0][0] == sizes[0][1]:
        return int(sizes[0][0])
    return int(model_cfg(model)["input_size"][1])


class DenseTask:
    """`run_data` and `build_model` of the dense tasks (module docstring); subclasses supply the rest."""
    name = "segmentation"
    watch_collapse = False      # no chance level is defined for masks or boxes; the non-finite guards still apply

    def __init__(self):
        self.eval_loader = None   # built on the first evaluation (the test split resized once)

    def model_kwargs(self, train_ds):
        return {}

    def run_data(self, config, d, device, saved_recipe, log) -> TaskData:
        if config.validation:
            raise ValueError("--validation is for classification runs; a dense folder brings its own val split")
        root = dense_root(config.data, config.data_dir)
        train_ds, test_ds = read_dense(root, self.name, "train"), read_dense(root, self.name, "test")
        if list(train_ds.classes) != list(test_ds.classes):
            raise ValueError(f"{root}: the train and val splits name different classes "
                             f"({len(train_ds.classes)} vs {len(test_ds.classes)}); they must be the same list")
        if config.subset:
            train_ds, test_ds = _take(train_ds, config.subset), _take(test_ds, config.subset)
        recipe, note = resolve(config, train_size=len(train_ds), world_size=d.world_size, saved_recipe=saved_recipe)
        if note:
            log(note)
        if recipe.batch_size % d.world_size:
            raise ValueError(f"batch size {recipe.batch_size} does not split over {d.world_size} processes")
        refuse_strong_augmentation(self.name, config.model, recipe)
        size = _image_size(recipe, train_ds, config.model)
        recipe = dataclasses.replace(recipe, img_size=size)
        mean, std = _stats(recipe.normalize, train_ds)
        loader = DenseLoader(train_ds, recipe.batch_size // d.world_size, size, train=True, mean=mean, std=std,
                             seed=config.seed, rank=d.rank, world_size=d.world_size, drop_last=recipe.drop_last,
                             flip=recipe.flip, scale_min=SCALE_MIN)
        log(f"{root}: {train_ds.name} layout, {len(train_ds)} train / {len(test_ds)} val images, "
            f"{len(train_ds.classes)} classes, at {size}x{size}")
        meta = dict(mean=mean, std=std, class_names=list(train_ds.classes), dataset=train_ds.name, in_chans=3,
                    img_size=size, lossy=bool(train_ds.lossy), data_source=train_ds.source, data_path="memory",
                    eval_transform=None, data_root=str(root))
        return TaskData(train_ds, test_ds, loader, recipe, mean, std, "memory", meta)

    def build_model(self, config, recipe, data, log):
        return DenseModel(config.model, self.name, config.head, data.train.num_classes, int(recipe.img_size), 3,
                          config.model_kwargs, frozen_backbone=config.freeze_backbone)

    def setup(self, run):
        return {"task": self.name, "head": run.model.head, "dense": run.model.dense}

    def test_loader(self, run):
        """The evaluation batches of this rank: the test split resized once, sharded r::W."""
        if self.eval_loader is None:
            d = run.dist
            self.eval_loader = DenseLoader(run.test_ds, run.config.eval_batch_size, run.recipe.img_size,
                                           train=False, mean=run.mean, std=run.std, rank=d.rank,
                                           world_size=d.world_size, drop_last=False)
        return self.eval_loader

    def after_commit(self, run, row):
        pass

    @staticmethod
    def saved_model(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None, subset=None,
                    batch_size=1000):
        """(model on `device`, eval loader over the split, weights file name, Precision) of a finished run."""
        from ..device import pick_device
        from ..train.precision import Precision
        from .model import load_dense
        weights_file = {"best": "best.safetensors", "last": "last.safetensors", None: None}.get(weights, weights)
        device = pick_device(device)
        model = load_dense(run.path, weights_file).to(device)
        root = dense_root(data or config.get("data_root"), data_dir)
        ds = read_dense(root, config["dense"]["task"], split)
        if subset:
            ds = _take(ds, subset)
        loader = DenseLoader(ds, batch_size, int(config["input_size"][1]), train=False, mean=config["mean"],
                             std=config["std"], drop_last=False)
        recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
        return model, loader, model.weights_file, Precision(recipe.get("precision", "fp32"), device)
