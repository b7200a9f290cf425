"""Decoding one image file to uint8 pixels, the same way for training folders and for `mixlab predict`.

Pillow opens the file; 16-bit and 32-bit integer images (PNG "I;16", "I") are scaled to 8 bits
(v · 255 / 65535, rounded) instead of being clipped at 255 as Pillow's own convert("L") does; palette,
alpha and CMYK images go through Pillow's RGB conversion. Images are closed as soon as they are decoded, so
a folder of any size never holds more than one open file.
"""
import numpy as np

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_HIGH_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _high_depth_to_uint8(img):
    arr = np.asarray(img)
    if img.mode == "F":
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 255.0 / 65535.0
    else:   # "I" holds 16-bit PNGs in current Pillow; larger values would be out of any image format we read
        scale = 255.0 / 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
    return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def decode(path, channels=None):
    """-> uint8 array [C, H, W] with C = `channels` (1 or 3), or the file's own (1 for grayscale, else 3)."""
    from PIL import Image

    with Image.open(path) as img:
        gray = img.mode in GRAY_MODES
        c = channels or (1 if gray else 3)
        if c not in (1, 3):
            raise ValueError(f"cannot convert images to {c} channels (only 1 or 3)")
        if img.mode in _HIGH_DEPTH:
            plane = _high_depth_to_uint8(img)
            arr = plane[None] if c == 1 else np.repeat(plane[None], 3, axis=0)
        else:
            pixels = np.asarray(img.convert("L" if c == 1 else "RGB"))
            arr = pixels[None] if c == 1 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(arr), gray


def open_image(path, channels):
    """The file as a PIL image in mode "L" (channels 1) or "RGB" (3), with the pixels `decode` gives."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"cannot convert images to {channels} channels (only 1 or 3)")
    with Image.open(path) as img:
        if img.mode not in _HIGH_DEPTH:
            return img.convert("L" if channels == 1 else "RGB")   # a loaded copy: the file closes here
    arr, _ = decode(path, channels)
    return Image.fromarray(arr[0] if channels == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)))
