"""Image size as a choice: the eval transform, the random-resized crop, and how a run records them.

timm's conventions (timm.data.transforms_factory), applied with torchvision's functional ops on PIL images:

- eval: resize the shorter side to ⌊S / crop_pct⌋ (aspect ratio kept), then centre-crop S×S. crop_pct = 1
  keeps the whole shorter side; timm's default is 0.875. An image already S×S with crop_pct = 1 is unchanged.
- train, `crop_flip` (the CIFAR recipes): the eval transform, then per-sample pad-and-crop and flip
  (`loader.crop_flip`) driven by the loader's epoch plan.
- train, `random_resized_crop` (the ImageNet recipes, Szegedy et al. 2015 as in torchvision/timm): a box of
  area fraction a ~ U(scale_min, 1) and aspect ratio r with log r ~ U(log 3/4, log 4/3), placed uniformly
  (10 tries, then the centre crop), resized to S×S; then the flip. The draws come from a generator seeded
  per (seed, epoch, position), so the crop is a pure function of them and not of worker or process count.

`ImageTransform` is the run's whole choice (recorded in config.json as `eval_transform`, which `mixlab
predict` and `mixlab eval` apply as is).
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

TRAIN_TRANSFORMS = ("crop_flip", "random_resized_crop")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
# crop_pct when the recipe leaves it unset: crop_flip keeps the whole image (a no-op at the native size),
# random_resized_crop evaluates as timm does by default.
DEFAULT_CROP_PCT = {"crop_flip": 1.0, "random_resized_crop": 0.875}
RRC_RATIO = (3 / 4, 4 / 3)
RRC_TRIES = 10


def _mode(name):
    from torchvision.transforms import InterpolationMode
    return InterpolationMode(name)


@dataclass(frozen=True)
class ImageTransform:
    """What a run does to an image: `img_size` S (None: leave the images at their own size), the eval
    crop fraction, the resampling filter, and the training augmentation family."""
    img_size: int = None
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    train: str = "crop_flip"
    crop_scale_min: float = 0.08

    def __post_init__(self):
        if self.img_size is not None and (isinstance(self.img_size, bool) or not isinstance(self.img_size, int)
                                          or self.img_size < 1):
            raise ValueError(f"img_size must be a positive integer, got {self.img_size!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.train not in TRAIN_TRANSFORMS:
            raise ValueError(f"train_transform must be one of {', '.join(TRAIN_TRANSFORMS)}, got {self.train!r}")
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min!r}")

    @property
    def resize_size(self):
        """The shorter side before the centre crop: ⌊S / crop_pct⌋ (timm's `scale_size`)."""
        return math.floor(self.img_size / self.crop_pct)

    @property
    def rrc(self):
        return self.train == "random_resized_crop"

    def is_identity_for(self, height, width):
        return self.img_size is None or (height == width == self.img_size and self.resize_size == self.img_size)

    def eval_pil(self, img):
        """The eval transform of one PIL image (torchvision Resize(shorter side) + CenterCrop, as timm)."""
        from torchvision.transforms import functional as TF
        if self.img_size is None:
            return img
        w, h = img.size
        if not self.is_identity_for(h, w):
            img = TF.resize(img, self.resize_size, interpolation=_mode(self.interpolation))
        return TF.center_crop(img, self.img_size)

    def source(self):
        """The transform that stores a *training* image for the device-resident random-resized crop: the
        centre square at ⌊S / crop_pct⌋, from which crops are taken on the device."""
        return ImageTransform(self.resize_size, 1.0, self.interpolation)

    def random_resized_crop_pil(self, img, generator):
        from torchvision.transforms import functional as TF
        w, h = img.size
        top, left, bh, bw = rrc_box(h, w, generator, self.crop_scale_min)
        return TF.resized_crop(img, top, left, bh, bw, [self.img_size, self.img_size],
                               interpolation=_mode(self.interpolation))

    def record(self, channels, mean, std):
        """config.json's `eval_transform`: everything predict/eval need to prepare an image as training did."""
        return {**{k: v for k, v in asdict(self).items() if k in ("img_size", "crop_pct", "interpolation")},
                "resize_size": self.resize_size, "channels": int(channels), "mean": [float(m) for m in mean],
                "std": [float(s) for s in std]}

    @classmethod
    def from_record(cls, record):
        try:
            return cls(int(record["img_size"]), float(record["crop_pct"]), str(record["interpolation"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"eval_transform {record!r} is incomplete or invalid ({e})") from None


def pil_to_tensor(img):
    """PIL image ("L" or "RGB") -> uint8 tensor [C, H, W]."""
    arr = np.array(img, dtype=np.uint8)   # a writable copy
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def tensor_to_pil(chw):
    """uint8 [C, H, W] (C ∈ {1, 3}) -> PIL image ("L" or "RGB")."""
    from PIL import Image
    arr = chw.numpy() if isinstance(chw, torch.Tensor) else np.asarray(chw)
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)))


def rrc_box(height, width, generator, scale_min=0.08, ratio=RRC_RATIO):
    """(top, left, box_height, box_width) of a random-resized crop of an image height×width.

    torchvision's `RandomResizedCrop.get_params` algorithm (area fraction U(scale_min, 1), log-uniform aspect
    ratio, up to 10 tries, else the centre crop at the clamped ratio), with every draw taken from `generator`
    in one block so the box depends on nothing else.
    """
    u = torch.rand(2 * RRC_TRIES + 2, generator=generator, dtype=torch.float64).tolist()
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for t in range(RRC_TRIES):
        target = area * (scale_min + (1 - scale_min) * u[2 * t])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[2 * t + 1])
        bw, bh = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < bw <= width and 0 < bh <= height:
            top = min(int(u[-2] * (height - bh + 1)), height - bh)
            left = min(int(u[-1] * (width - bw + 1)), width - bw)
            return top, left, bh, bw
    in_ratio = width / height
    if in_ratio < ratio[0]:
        bw, bh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        bh, bw = height, int(round(height * ratio[1]))
    else:
        bw, bh = width, height
    return (height - bh) // 2, (width - bw) // 2, bh, bw


def sample_generator(sample_seed):
    return torch.Generator().manual_seed(int(sample_seed))


def resized_crop_batch(images, boxes, size):
    """Random-resized crops of a batch on its device: images [B, C, H, W] (any dtype), boxes [B, 4] as
    (top, left, height, width) -> float [B, C, size, size] in the images' value range.

    `torchvision.ops.roi_align` (aligned, adaptive sampling: each output pixel averages ⌈box/size⌉² bilinear
    samples) is a batched crop-and-resize with area averaging on shrinking, close to the antialiased resize
    the streaming path applies to the full-resolution file.
    """
    from torchvision.ops import roi_align
    x = images.float()
    b = boxes.to(device=x.device, dtype=x.dtype)
    rois = torch.stack([torch.arange(len(b), device=x.device, dtype=x.dtype), b[:, 1], b[:, 0],
                        b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
