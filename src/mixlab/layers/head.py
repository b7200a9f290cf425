"""Classifier-head helpers of the CNN backbones (AFFNet, the CIFAR ResNets): timm's global_pool values."""
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
