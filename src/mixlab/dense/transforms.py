"""Joint image + target transforms for dense prediction (torchvision transforms.v2 with tv_tensors).

Training: RandomResizedCrop(S, scale=(scale_min, 1)) then a horizontal flip with probability 1/2; evaluation:
Resize((S, S)). The image is resized bilinearly (antialiased), a mask (tv_tensors.Mask) with nearest
neighbours, and boxes (tv_tensors.BoundingBoxes, XYXY) move with the geometry; a box is clamped to the crop
and dropped when less than `MIN_BOX` pixels of width or height remain (v2.SanitizeBoundingBoxes).
Randomness: one sample's draw is a pure function of `seed` (its own torch generator state, forked), so a
sample's augmentation depends only on (run seed, epoch, position) as the classification loaders' do.
"""
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

MIN_BOX = 1.0


def joint_transform(size, train, scale_min=0.5):
    """The v2 pipeline for (image, target) at output size S×S."""
    steps = [v2.RandomResizedCrop(size, scale=(scale_min, 1.0), antialias=True), v2.RandomHorizontalFlip()] \
        if train else [v2.Resize((size, size), antialias=True)]
    return v2.Compose(steps)


_SANITIZE = v2.SanitizeBoundingBoxes(min_size=MIN_BOX, labels_getter=lambda inputs: _labels(inputs))


def _labels(inputs):
    target = inputs[1] if isinstance(inputs, (tuple, list)) and len(inputs) > 1 else None
    return target.get("labels") if isinstance(target, dict) else None


def wrap(image, target):
    """(tv_tensors.Image, target as tv_tensors) for a reader's (uint8 image, mask or {boxes, labels})."""
    img = tv_tensors.Image(image)
    if isinstance(target, dict):
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[1:]))
        return img, {"boxes": boxes, "labels": target["labels"]}
    return img, {"mask": tv_tensors.Mask(target)}


def unwrap(image, target):
    """Plain tensors back: (uint8 image, int64 mask) or (uint8 image, {boxes float32, labels int64})."""
    if "mask" in target:
        return image.as_subclass(torch.Tensor), target["mask"].as_subclass(torch.Tensor).to(torch.int64)
    return image.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor).float(),
                                             "labels": target["labels"]}


def _run(transform, image, target):
    out = transform(*wrap(image, target))
    if isinstance(target, dict):   # boxes left with less than MIN_BOX of width or height are dropped
        out = _SANITIZE(*out)
    return unwrap(*out)


def apply(transform, image, target, seed=None):
    """`transform` on one sample; with `seed` its random draws come from that seed only (global RNG kept)."""
    if seed is None:
        return _run(transform, image, target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return _run(transform, image, target)
