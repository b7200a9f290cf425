"""Input normalisation per model, named by the recipe a model is trained with (`register_model(..., norm=...)` or
the model class's `default_norm`). timm's data config (`resolve_data_config`) reads it as the model's mean/std;
the dataset's own statistics live in its `DatasetSpec` (`spec.py`)."""

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # NiNformer / Activator official train.py: Normalize(mean 0.5, std 0.5), the `paper` recipe
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # DIANet's cifar.py constants, the `dianet` recipe (CIFAR ResNets, with or without DIA)
    "dianet": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # CIFAR-10 training-set statistics: the `mixlab` recipe normalises with the dataset's own, at 3×32×32
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # ml-cvnets (AFFNet's ImageNet training): ToTensor only, pixels in [0, 1], no mean/std
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # timm's default, for models that declare nothing
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def check_norm(owner: str, norm: str) -> None:
    """A one-line error for a normalisation name the table does not have."""
    if norm not in NORMALIZATION:
        raise ValueError(f"{owner}: norm must be one of {sorted(NORMALIZATION)}, got {norm!r}")


def mean_std(norm: str, chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of `norm` for `chans` channels: another channel count than the recipe's gets its per-channel
    values averaged."""
    mean, std = NORMALIZATION[norm]
    return fit_channels(mean, std, chans)


def fit_channels(mean, std, chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(mean) != chans:
        mean, std = (sum(mean) / len(mean),) * chans, (sum(std) / len(std),) * chans
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)
