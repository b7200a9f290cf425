"""The heads each dense task can put on a backbone, checked before anything is read (`TrainConfig.check`).

    segmentation   deeplabv3 (default): torchvision's DeepLabHead (ASPP, rates 12/24/36) on the last level
                   fpn: a light FPN head — torchvision's FeaturePyramidNetwork over the levels, the maps summed
                        at the finest level, 3×3 conv + GroupNorm + ReLU, 1×1 conv to the classes
    detection      retinanet (default): torchvision's RetinaNet over an FPN of the backbone's levels
                   fcos: torchvision's FCOS over the same FPN
"""
HEADS: dict[str, tuple[str, ...]] = {"segmentation": ("deeplabv3", "fpn"), "detection": ("retinanet", "fcos")}


def default_head(task: str) -> str:
    """The head a dense task uses when none is asked for."""
    return HEADS[task][0]


def check_head(task: str, head: str | None) -> None:
    """A one-line ValueError for a head that `task` has no such head (or that is not a dense task)."""
    if head is None:
        return
    if task not in HEADS:
        raise ValueError(f"--head {head!r} is for a dense task: give --task segmentation or --task detection")
    if head not in HEADS[task]:
        raise ValueError(f"unknown {task} head {head!r}; choose one of {', '.join(HEADS[task])}")
