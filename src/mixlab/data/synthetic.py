"""A small deterministic dataset a model can learn in seconds, for tests and smoke runs.

Class k has a fixed smooth prototype P_k (a random C×4×4 pattern, bilinearly upsampled to H×W); a sample
is x = clamp(a·P_k + b + ε, 0, 1) with per-sample contrast a ~ U(0.6, 1), brightness b ~ U(-0.1, 0.1) and
pixel noise ε ~ N(0, 0.08²), stored as uint8. Prototypes depend only on (K, C, H, W); samples also on the
split, so train and test are different draws of the same classes.

Name: "synthetic" (1000 train / 200 test, 3×32×32, 10 classes), "synthetic:N", "synthetic:NxCxHxW" or
"synthetic:NxCxHxW:K"; N is the train size and the test split holds max(N // 5, K) images.
"""
import torch
import torch.nn.functional as F

DEFAULT = (1000, 3, 32, 32, 10)


def parse_spec(name):
    """'synthetic:512x1x28x28:5' -> (512, 1, 28, 28, 5); missing parts take the defaults."""
    n, c, h, w, k = DEFAULT
    _, _, spec = name.partition(":")
    if not spec:
        return DEFAULT
    shape, _, classes = spec.partition(":")
    try:
        dims = [int(v) for v in shape.lower().split("x")]
        k = int(classes) if classes else k
    except ValueError:
        dims = None
    if dims is None or len(dims) not in (1, 4) or min(dims) <= 0 or k < 2:
        raise ValueError(f"bad synthetic spec {name!r}: use synthetic:N, synthetic:NxCxHxW or synthetic:NxCxHxW:K "
                         "(positive sizes, K >= 2)")
    n, c, h, w = dims if len(dims) == 4 else (dims[0], c, h, w)
    return n, c, h, w, k


def make_synthetic(split, num_samples, channels, height, width, num_classes):
    """-> (images uint8 [n, C, H, W], labels int64 [n]) for `split` ('train' or anything else = test)."""
    proto_gen = torch.Generator().manual_seed(1000003 * num_classes + 7919 * channels + height * 31 + width)
    prototypes = torch.rand(num_classes, channels, 4, 4, generator=proto_gen)
    prototypes = F.interpolate(prototypes, size=(height, width), mode="bilinear", align_corners=False)
    n = num_samples if split == "train" else max(num_samples // 5, num_classes)
    gen = torch.Generator().manual_seed(1 if split == "train" else 2)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    contrast = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = 0.2 * torch.rand(n, 1, 1, 1, generator=gen) - 0.1
    noise = 0.08 * torch.randn(n, channels, height, width, generator=gen)
    x = (contrast * prototypes[labels] + brightness + noise).clamp(0, 1)
    return (x * 255).round().to(torch.uint8), labels
