"""Offline scenes for dense prediction: Fashion-MNIST / MNIST objects pasted onto larger canvases, written as
real Pascal VOC, COCO and ADE20K folders (images, palette masks, XML, JSON), so tests and CPU demos read
exactly what a user's dataset gives.

One scene: a canvas S×S of smooth coloured background noise; 1..max_objects objects, each a 28×28 glyph of
one of the chosen classes, scaled to a side in [S/4, S/2], tinted with a random colour and pasted at a random
position (later objects occlude earlier ones). An object's mask is its glyph's pixels above `THRESHOLD` (as
pasted, after occlusion); its box is the tight box of its mask, so box and mask agree by construction. An
object occluded to fewer than `MIN_PIXELS` pixels is removed from mask and annotations.

Glyphs come from Fashion-MNIST or MNIST when found (`mixlab.data.load_dataset`, never downloaded here) and
otherwise from `synthetic_glyphs`: class-specific stroke figures, so tests never need a real dataset.

Layouts written under `root` (any subset of VOC, COCO, ADE20K):

    VOC/JPEGImages/ID.jpg  VOC/SegmentationClass/ID.png (palette, 0 background, k = class k)
    VOC/Annotations/ID.xml VOC/ImageSets/{Segmentation,Main}/{train,val}.txt  VOC/labels.txt
    COCO/annotations/instances_{train,val}.json  COCO/{train,val}/ID.jpg
    ADEChallengeData2016/images/{training,validation}/ID.jpg
    ADEChallengeData2016/annotations/{training,validation}/ID.png  (0 other = ignored, 1 background, k+1)
    ADEChallengeData2016/objectInfo150.txt
"""
import json
import math
from pathlib import Path

import numpy as np
import torch

THRESHOLD = 0.35
MIN_PIXELS = 12
LAYOUTS = ("voc", "coco", "ade20k")
SPLITS = ("train", "val")


def voc_palette():
    """The Pascal VOC colour map (bit-interleaved RGB of the index), 256 × 3 bytes."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def synthetic_glyphs(per_class, num_classes, seed=0):
    """Digit-like 28×28 glyphs in [0, 1]: class k is a fixed stroke figure (k-dependent polyline through
    points on a circle) drawn with per-glyph jitter. Returns (glyphs [N, 28, 28] float, labels [N])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    glyphs, labels = [], []
    for k in range(num_classes):
        base = np.random.default_rng(1000 + k)
        n_pts = 3 + k % 4
        angles = base.uniform(0, 2 * math.pi, n_pts)
        radii = base.uniform(4, 11, n_pts)
        for _ in range(per_class):
            a = angles + rng.normal(0, 0.15, n_pts)
            r = radii + rng.normal(0, 0.8, n_pts)
            pts = np.stack([14 + r * np.cos(a), 14 + r * np.sin(a)], 1)
            img = np.zeros((28, 28), np.float32)
            for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
                t = np.linspace(0, 1, 24)[:, None]
                seg = (1 - t) * np.array([x0, y0]) + t * np.array([x1, y1])
                for sx, sy in seg:
                    img = np.maximum(img, np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 1.3 ** 2)))
            glyphs.append(img)
            labels.append(k)
    return np.stack(glyphs), np.array(labels)


def _glyph_source(source, num_classes, data_dir, seed):
    """(glyphs [N, 28, 28] float in [0, 1], labels, class names, where they came from)."""
    if source in ("fashion-mnist", "mnist"):
        try:
            from ..data import load_dataset
            ds = load_dataset(source, split="train", data_dir=data_dir, download=False, verbose=False)
            keep = ds.labels < num_classes
            names = [_safe_name(c) for c in ds.classes[:num_classes]]
            return ds.images[keep, 0].float().numpy() / 255.0, ds.labels[keep].numpy(), names, source
        except (FileNotFoundError, ValueError, OSError):
            pass
    glyphs, labels = synthetic_glyphs(60, num_classes, seed)
    return glyphs, labels, [f"glyph{k}" for k in range(num_classes)], "synthetic glyphs"


def _safe_name(name):
    return "".join(ch if ch.isalnum() else "_" for ch in str(name).lower()).strip("_")


def _background(rng, size):
    """Smooth low-contrast colour noise: a 4×4 random grid upsampled bilinearly, in [0.05, 0.35]."""
    coarse = torch.from_numpy(rng.uniform(0.05, 0.35, (1, 3, 4, 4)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


def make_scene(rng, glyphs, labels, size, max_objects):
    """One scene: (image uint8 [3, S, S], class map int64 [S, S] (0 background, k+1 class k),
    objects [(class k, x0, y0, x1, y1)] with half-open pixel boxes)."""
    image = _background(rng, size)
    owner = torch.zeros(size, size, dtype=torch.int64)   # 0 background, i+1 object i
    placed = []
    for i in range(int(rng.integers(1, max_objects + 1))):
        j = int(rng.integers(len(glyphs)))
        side = int(rng.integers(max(8, size // 4), max(9, size // 2) + 1))
        glyph = torch.nn.functional.interpolate(torch.from_numpy(glyphs[j])[None, None].float(), size=(side, side),
                                                mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
        y, x = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
        colour = torch.from_numpy(rng.uniform(0.5, 1.0, 3).astype(np.float32))
        alpha = glyph[None]
        region = image[:, y:y + side, x:x + side]
        image[:, y:y + side, x:x + side] = region * (1 - alpha) + colour[:, None, None] * alpha
        owner[y:y + side, x:x + side][glyph > THRESHOLD] = i + 1
        placed.append(int(labels[j]))
    mask = torch.zeros(size, size, dtype=torch.int64)
    objects = []
    for i, k in enumerate(placed):
        ys, xs = torch.nonzero(owner == i + 1, as_tuple=True)
        if len(ys) < MIN_PIXELS:
            owner[owner == i + 1] = 0
            continue
        mask[owner == i + 1] = k + 1
        objects.append((k, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return (image * 255).round().clamp(0, 255).to(torch.uint8), mask, objects


def _save_jpg(image, path):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=95)


def _save_mask(mask, path, palette=None):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P" if palette else "L")
    if palette:
        img.putpalette(palette)
    img.save(path)


def _voc_xml(name, size, objects, classes):
    lines = [f"<annotation><folder>VOC</folder><filename>{name}.jpg</filename>",
             f"<size><width>{size}</width><height>{size}</height><depth>3</depth></size><segmented>1</segmented>"]
    for k, x0, y0, x1, y1 in objects:   # VOC boxes are 1-based and inclusive
        lines.append(f"<object><name>{classes[k]}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    return "\n".join(lines + ["</annotation>"]) + "\n"


def make_scenes(root, train=64, val=32, size=64, num_classes=4, max_objects=3, source="fashion-mnist",
                layouts=LAYOUTS, seed=0, data_dir=None):
    """Write `train` + `val` scenes under `root` in each of `layouts` (module docstring); returns
    {"root", "classes", "glyphs", layout: its folder}. The same scenes go to every layout."""
    unknown = [x for x in layouts if x not in LAYOUTS]
    if unknown:
        raise ValueError(f"unknown scene layout(s) {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")
    for what, value in (("train", train), ("val", val), ("size", size), ("num_classes", num_classes),
                        ("max_objects", max_objects)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if size < 16:
        raise ValueError(f"scene size must be at least 16, got {size}")
    if not 1 <= num_classes <= 10:
        raise ValueError(f"num_classes must be in 1..10 (the glyph classes), got {num_classes}")
    root = Path(root)
    glyphs, labels, classes, where = _glyph_source(source, num_classes, data_dir, seed)
    rng = np.random.default_rng(seed)
    palette = voc_palette()
    voc, coco, ade = root / "VOC", root / "COCO", root / "ADEChallengeData2016"
    out = {"root": str(root), "classes": classes, "glyphs": where}
    coco_json = {}
    for split, count in (("train", train), ("val", val)):
        ids = [f"{split}_{i:05d}" for i in range(count)]
        images, annotations = [], []
        for n, name in enumerate(ids):
            image, mask, objects = make_scene(rng, glyphs, labels, size, max_objects)
            if "voc" in layouts:
                _save_jpg(image, voc / "JPEGImages" / f"{name}.jpg")
                _save_mask(mask, voc / "SegmentationClass" / f"{name}.png", palette)
                (voc / "Annotations").mkdir(parents=True, exist_ok=True)
                (voc / "Annotations" / f"{name}.xml").write_text(_voc_xml(name, size, objects, classes))
            if "coco" in layouts:
                _save_jpg(image, coco / split / f"{name}.jpg")
                images.append({"id": n + 1, "file_name": f"{name}.jpg", "width": size, "height": size})
                for k, x0, y0, x1, y1 in objects:
                    annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": k + 1,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                        "iscrowd": 0, "segmentation": []})
            if "ade20k" in layouts:
                folder = "training" if split == "train" else "validation"
                _save_jpg(image, ade / "images" / folder / f"{name}.jpg")
                _save_mask(mask + 1, ade / "annotations" / folder / f"{name}.png")
        if "voc" in layouts:
            for sets in ("Segmentation", "Main"):
                (voc / "ImageSets" / sets).mkdir(parents=True, exist_ok=True)
                (voc / "ImageSets" / sets / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if "coco" in layouts:
            coco_json[split] = {"images": images, "annotations": annotations,
                                "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
            (coco / "annotations").mkdir(parents=True, exist_ok=True)
            (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco_json[split]))
    if "voc" in layouts:
        (voc / "labels.txt").write_text("".join(f"{c}\n" for c in ["background"] + classes))
        out["voc"] = str(voc)
    if "coco" in layouts:
        out["coco"] = str(coco)
    if "ade20k" in layouts:
        rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i + 1}\t0\t0\t0\t{c}"
                                                    for i, c in enumerate(["background"] + classes)]
        (ade / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
        out["ade20k"] = str(ade)
    return out
