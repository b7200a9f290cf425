"""Sample grids as PNG files, written atomically (a run killed mid-write leaves the old grid or none)."""
import math

import torch

from ..fileio import atomic_write


def image_grid(images, nrow=None, padding=2):
    """uint8 [N, C, H, W] → one uint8 image [H', W', 3] (or [H', W'] for grey), `nrow` images a row
    (default ⌈√N⌉), tiles separated by `padding` black pixels (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected uint8 images [N, 1 or 3, H, W] with N > 0, got {images.dtype} "
                         f"{tuple(images.shape)}")
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    grid = make_grid(images.cpu(), nrow=nrow, padding=padding, pad_value=0)   # grey is repeated to 3 channels
    grid = grid.permute(1, 2, 0)
    return grid[..., 0].contiguous() if images.shape[1] == 1 else grid.contiguous()


def save_grid(images, path, nrow=None, padding=2):
    """Write `image_grid(images)` to `path` as a PNG, atomically; returns the path as a string."""
    from PIL import Image

    picture = Image.fromarray(image_grid(images, nrow, padding).numpy())
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"), suffix=".png")
    return str(path)
