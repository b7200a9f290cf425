"""Classifier heads with timm's API: global_pool values, pooling, a fresh head, and the shared methods."""
import torch
from torch import nn

POOL_TYPES = ("avg", "max", "")


def check_pool(global_pool):
    if global_pool not in POOL_TYPES:
        raise ValueError(f"global_pool must be 'avg', 'max' or '' (no pooling), got {global_pool!r}")


def pool2d(x, global_pool: str):
    """Global pooling of a [B, C, H, W] map: 'avg', 'max', or '' (the map itself)."""
    if global_pool == "avg":
        return x.mean(dim=(2, 3))
    if global_pool == "max":
        return x.amax(dim=(2, 3))
    return x


def new_head(model, num_features, num_classes, ref):
    """A Linear head (or Identity for 0 classes) on the device / dtype of `ref` and in the model's mode."""
    if num_classes == 0:
        return nn.Identity()
    return nn.Linear(num_features, num_classes, device=ref.device, dtype=ref.dtype).train(model.training)


class ClassifierApi:
    """timm's classifier methods for a model with `head`, `num_features`, `global_pool`, `grad_checkpointing`:
    `get_classifier`, `reset_classifier(num_classes, global_pool=None)` and `set_grad_checkpointing`. A model
    whose pooling options depend on its configuration overrides `check_global_pool`."""

    def check_global_pool(self, global_pool):
        check_pool(global_pool)

    @torch.jit.ignore
    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes, global_pool=None):
        if global_pool is not None:
            self.check_global_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.num_features, num_classes, ref=next(self.parameters()))

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable
