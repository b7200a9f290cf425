"""Top-k classification of image files with a trained run.

Each image is prepared exactly as the run's test images were: Pillow reads it (`mixlab.data.images`:
single-channel "L" for a 1-channel model, "RGB" for a 3-channel one, 16-bit images scaled); the run's eval
transform (config.json `eval_transform`: shorter side to ⌊S / crop_pct⌋ with its interpolation, centre crop
S×S; `mixlab.data.transforms.ImageTransform.eval_pil`) brings it to the input size; pixels are scaled to
[0, 1] and normalised with the run's mean/std. Then softmax, top-k. A run that recorded no eval transform
(trained at its data's own size) gets the default one at its input size: crop_pct 1, bilinear. A file
Pillow cannot read, one over Pillow's decompression-bomb limit, and anything that is not a regular file (a
named pipe would block the read forever) are reported as skipped, never raised or waited on.
"""
from dataclasses import dataclass
from pathlib import Path

import torch

from .fileio import first_line

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
_MODES = {1: "L", 3: "RGB"}


@dataclass
class Prediction:
    path: str
    top: list   # [(class name, probability)], most likely first


def expand_paths(paths):
    """Files as given, folders replaced by the image files under them (sorted, recursive)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


def eval_transform_of(config, input_size):
    """The `ImageTransform` predict applies: the run's recorded eval transform, else the default at its size."""
    from .data.transforms import ImageTransform
    record = (config or {}).get("eval_transform")
    if record:
        transform = ImageTransform.from_record(record)
        if transform.img_size != input_size[1]:
            raise ValueError(f"the run's eval_transform size {transform.img_size} differs from its input size "
                             f"{input_size[1]}; was config.json edited?")
        return transform
    return ImageTransform(int(input_size[1]), 1.0, "bilinear")


def read_image(path, input_size, transform=None):
    """Image file → float tensor [C, H, W] in [0, 1] at the model's input size (C ∈ {1, 3}), through the
    eval transform `transform` (default: shorter side to H, centre crop, bilinear)."""
    from .data.images import open_image
    from .data.transforms import pil_to_tensor
    chans, h, w = input_size
    if chans not in _MODES:
        raise ValueError(f"cannot convert images for a {chans}-channel model (only 1 or 3)")
    if h != w:
        raise ValueError(f"input size {h}x{w} is not square")
    transform = transform or eval_transform_of(None, input_size)
    return pil_to_tensor(transform.eval_pil(open_image(path, chans))).float() / 255.0


def _why_unreadable(err):
    from PIL import Image, UnidentifiedImageError
    if isinstance(err, Image.DecompressionBombError):   # Pillow's guard against images that decompress huge
        return f"too large to decode safely ({first_line(err)})"
    if isinstance(err, UnidentifiedImageError):
        return "cannot identify image"
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    return first_line(err)


def _not_regular(path):
    """Why `path` is no file to read (a FIFO would block the read forever, a device never end), or None."""
    import stat
    try:
        mode = path.stat().st_mode
    except OSError:
        return None   # missing or unreadable: reported by the read below, as before
    if stat.S_ISREG(mode):
        return None
    kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory" if stat.S_ISDIR(mode) else "special"
    return f"not a regular file ({kind})"


def _normaliser(data_config, chans):
    mean, std = data_config.get("mean"), data_config.get("std")
    if mean is None or std is None:
        raise ValueError("the run's config.json has no mean/std, so images cannot be normalised as in training")
    as_vec = lambda v: torch.as_tensor(v, dtype=torch.float32).flatten().expand(chans).reshape(chans, 1, 1)
    try:
        mean, std = as_vec(mean), as_vec(std)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"the run's mean/std {data_config.get('mean')}/{data_config.get('std')} do not fit a "
                         f"{chans}-channel model") from None
    if not bool((std > 0).all()):
        raise ValueError(f"the run's std {data_config.get('std')} must be positive")
    return mean, std


def predict_files(model, paths, top_k=5, batch_size=64):
    """Classify image files with `model` (from `mixlab.load`, which sets `model.data_config`, the run's eval transform included).

    Returns (predictions, skipped): one Prediction per readable image, in input order, and (path, reason)
    for each file that could not be read.
    """
    from .registry import model_cfg
    name = getattr(model, "model_name", None)
    if name and model_cfg(name).get("task", "classification") != "classification":
        raise ValueError(f"{name} is a {model_cfg(name)['task']} model: it does not classify images "
                         f"(for samples: mixlab sample --run DIR)")
    config = getattr(model, "data_config", None) or {}
    input_size = config.get("input_size")
    if not input_size:
        raise ValueError("the model carries no input size; load it with mixlab.load(run_dir)")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if input_size[0] not in _MODES:
        raise ValueError(f"cannot convert images for a {input_size[0]}-channel model (only 1 or 3)")
    mean, std = _normaliser(config, input_size[0])
    transform = eval_transform_of(config, input_size)
    class_names = config.get("class_names")
    outputs = getattr(model, "num_classes", None)
    if class_names and isinstance(outputs, int) and outputs > 0 and len(class_names) != outputs:
        raise ValueError(f"the run's class_names name {len(class_names)} classes but its model has {outputs} outputs: "
                         f"its config.json does not describe these weights (was it edited?)")
    images, kept, skipped = [], [], []
    from PIL import Image
    for p in expand_paths(paths):
        why = _not_regular(p)
        if why:
            skipped.append((str(p), why))
            continue
        try:
            images.append(read_image(p, input_size, transform))
            kept.append(str(p))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:   # Pillow's for bad files
            skipped.append((str(p), _why_unreadable(e)))
    predictions = []
    model.eval()
    for i in range(0, len(images), batch_size):
        x = (torch.stack(images[i:i + batch_size]) - mean) / std
        with torch.no_grad():
            probs = model(x).float().softmax(dim=-1)
        k = min(top_k, probs.shape[-1])
        values, indices = probs.topk(k, dim=-1)
        for path, vals, idxs in zip(kept[i:i + batch_size], values.tolist(), indices.tolist()):
            names = [class_names[j] if class_names and j < len(class_names) else f"class {j}" for j in idxs]
            predictions.append(Prediction(path, list(zip(names, vals))))
    return predictions, skipped
