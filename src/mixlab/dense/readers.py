"""Readers for dense-prediction data in the layouts people have, into one `DenseDataset`.

    Pascal VOC   JPEGImages/ID.jpg, SegmentationClass/ID.png (palette or grey index masks),
                 Annotations/ID.xml, ImageSets/{Segmentation,Main}/{train,val}.txt; also under VOC2012/,
                 VOCdevkit/VOC2012/ or VOC/. Classes: labels.txt (one name a line, line i = mask index i,
                 "background" first) when present; else the 21 VOC classes when every index / XML name is one
                 of them; else (a labelling tool's own classes) the XML names sorted, or class_i for mask
                 indices up to the largest one seen.
    ADE20K       ADEChallengeData2016/images|annotations/training|validation; index 0 ("other") is ignored
                 (255), index v is class v-1 (the ADE20K benchmark's reduce-zero-label rule); class names
                 from objectInfo150.txt (or .csv) when present.
    COCO         annotations/instances_{train,val}*.json with the images in the folder named after the file's
                 suffix (train2017/), or train/, val/, or images/.
    mask folder  images/NAME.{jpg,png} + masks/NAME.png (index masks), either under train/ and val/ or once
                 (then train.txt / val.txt list the names, or every 5th name in sorted order is val);
                 optional labels.txt.

Splits: "train" reads train / training; "test" reads val / validation (the public splits have no test labels).

Targets: segmentation, an int64 mask [H, W] with classes 0..K-1 and 255 = ignore; detection, a dict of boxes
float [N, 4] (x0, y0, x1, y1, pixels, half-open: VOC's 1-based inclusive boxes become (xmin-1, ymin-1, xmax,
ymax)) and labels int64 [N] in 1..K (0 is the detectors' background; `classes[0]` = "background").
Rules for bad targets (each a one-line ValueError naming the file, never a silent wrong label):
  a mask of another size than its image; a mask index ≥ K that is not 255; an XML object name or COCO
  category id not in the class list; a box with x1 ≤ x0 or y1 ≤ y0; a box reaching more than 1 pixel
  outside its image (within 1 pixel it is clipped: rounding of hand labels); a listed id without its image,
  mask or XML. An image without objects is kept as a negative image (COCO's own rule); COCO `iscrowd`
  regions and VOC `difficult` flags are not modelled: crowd regions are dropped, difficult objects kept.
Everything is decoded once into memory (dense sets used here are small; a warning-free, simple path).
"""
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IGNORE = 255
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BOX_TOLERANCE = 1.0
TASKS = ("segmentation", "detection")


@dataclass
class DenseDataset:
    """Images (uint8 [3, H, W] each, sizes may differ) and their targets (module docstring)."""
    images: list
    targets: list
    classes: list
    task: str
    name: str
    source: str
    split: str
    files: list = field(default_factory=list)
    lossy: bool = False

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]

    @property
    def num_classes(self):
        """Segmentation: K mask classes; detection: K object classes + background."""
        return len(self.classes)

    def sizes(self):
        return sorted({tuple(im.shape[1:]) for im in self.images})

    def stats(self, limit=256):
        """Per-channel mean and std in [0, 1] over (up to `limit`) images of this split."""
        xs = torch.cat([im.reshape(3, -1).double() / 255 for im in self.images[:limit]], 1)
        return tuple(xs.mean(1).tolist()), tuple(xs.std(1).clamp_min(1e-3).tolist())


def _read_image(path):
    from PIL import Image
    if not path.is_file():
        raise ValueError(f"{path}: image file is missing")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _read_mask(path, image, num_classes, palette_colours=None):
    """Index mask of `path` (P or L mode; an RGB mask through the palette's colours) checked against image."""
    from PIL import Image
    if not path.is_file():
        raise ValueError(f"{path}: mask file is missing")
    with Image.open(path) as im:
        if im.mode in ("P", "L", "I", "I;16"):
            arr = np.asarray(im).astype(np.int64)
        elif im.mode in ("RGB", "RGBA"):
            arr = _rgb_to_index(np.asarray(im.convert("RGB")), palette_colours, path)
        else:
            raise ValueError(f"{path}: mask mode {im.mode} is not an index mask (P, L) or a palette-coloured RGB")
    mask = torch.from_numpy(arr)
    if tuple(mask.shape) != tuple(image.shape[1:]):
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                         f"{image.shape[2]}x{image.shape[1]}")
    if num_classes is not None:
        bad = (mask >= num_classes) & (mask != IGNORE)
        if bad.any():
            raise ValueError(f"{path}: mask index {int(mask[bad].max())} is not a class (0..{num_classes - 1}) "
                             f"or {IGNORE} (ignore)")
    return mask


def _rgb_to_index(rgb, colours, path):
    from .scenes import voc_palette
    pal = np.array(colours or voc_palette(), dtype=np.int64).reshape(-1, 3)
    code = rgb[..., 0].astype(np.int64) * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    lookup = {int(r * 65536 + g * 256 + b): i for i, (r, g, b) in enumerate(pal)}
    out = np.full(code.shape, -1, dtype=np.int64)
    for value in np.unique(code):
        if int(value) not in lookup:
            raise ValueError(f"{path}: RGB mask colour #{int(value):06x} is not in the palette")
        out[code == value] = lookup[int(value)]
    return out


def _check_boxes(boxes, image, where):
    """Boxes [N, 4] must have area and lie inside the image up to BOX_TOLERANCE (then clipped)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4)
    h, w = image.shape[1:]
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        raise ValueError(f"{where}: box {boxes[bad][0].tolist()} has no area (x1 <= x0 or y1 <= y0)")
    out = (boxes[:, 0] < -BOX_TOLERANCE) | (boxes[:, 1] < -BOX_TOLERANCE) | \
          (boxes[:, 2] > w + BOX_TOLERANCE) | (boxes[:, 3] > h + BOX_TOLERANCE)
    if out.any():
        raise ValueError(f"{where}: box {boxes[out][0].tolist()} lies outside the {w}x{h} image")
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def _read_ids(path):
    if not path.is_file():
        raise ValueError(f"{path}: split list is missing")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _labels_txt(folder):
    path = folder / "labels.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names in it")
    return names


# --- Pascal VOC ---------------------------------------------------------------------------------------------
def find_voc(root):
    root = Path(root)
    for folder in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012", root / "VOC", root / "VOCdevkit" / "VOC2007"):
        if (folder / "JPEGImages").is_dir():
            return folder
    return None


def _voc_objects(path):
    if not path.is_file():
        raise ValueError(f"{path}: annotation XML is missing")
    try:
        tree = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: not valid XML ({e})") from None
    objects = []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: object {name!r} has a bndbox without four numbers") from None
        objects.append((name, [xmin - 1, ymin - 1, xmax, ymax]))
    return objects


def read_voc(root, task, split):
    folder = find_voc(root)
    sub = "Segmentation" if task == "segmentation" else "Main"
    ids = _read_ids(folder / "ImageSets" / sub / f"{'train' if split == 'train' else 'val'}.txt")
    listed = _labels_txt(folder)
    images = [_read_image(folder / "JPEGImages" / f"{i}.jpg") for i in ids]
    if task == "segmentation":
        classes = listed or list(VOC_CLASSES)
        masks = [_read_mask(folder / "SegmentationClass" / f"{i}.png", im, len(classes) if listed else None)
                 for i, im in zip(ids, images)]
        if not listed:
            top = max((int(m[m != IGNORE].max()) for m in masks if (m != IGNORE).any()), default=0)
            classes = list(VOC_CLASSES) if top < len(VOC_CLASSES) else [f"class_{k}" for k in range(top + 1)]
        return DenseDataset(images, masks, classes, task, "voc", str(folder), split,
                            [f"{i}.jpg" for i in ids], lossy=False)
    objects = [_voc_objects(folder / "Annotations" / f"{i}.xml") for i in ids]
    if listed:
        names = listed[1:] if listed[0].lower() in ("background", "__background__", "_background_") else listed
    else:
        seen = {n for objs in objects for n, _ in objs}
        other = [_voc_objects(folder / "Annotations" / f"{i}.xml")
                 for i in _read_ids(folder / "ImageSets" / "Main" / f"{'val' if split == 'train' else 'train'}.txt")]
        seen |= {n for objs in other for n, _ in objs}
        names = list(VOC_CLASSES[1:]) if seen <= set(VOC_CLASSES[1:]) else sorted(seen)
    index = {n: k + 1 for k, n in enumerate(names)}
    targets = []
    for i, im, objs in zip(ids, images, objects):
        where = folder / "Annotations" / f"{i}.xml"
        for n, _ in objs:
            if n not in index:
                raise ValueError(f"{where}: object class {n!r} is not one of the {len(names)} classes "
                                 f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")
        boxes = torch.tensor([b for _, b in objs], dtype=torch.float32).reshape(-1, 4)
        targets.append({"boxes": _check_boxes(boxes, im, where),
                        "labels": torch.tensor([index[n] for n, _ in objs], dtype=torch.int64)})
    return DenseDataset(images, targets, ["background"] + names, task, "voc", str(folder), split,
                        [f"{i}.jpg" for i in ids])


# --- ADE20K -------------------------------------------------------------------------------------------------
def find_ade(root):
    root = Path(root)
    for folder in (root / "ADEChallengeData2016", root):
        if (folder / "images" / "training").is_dir() and (folder / "annotations" / "training").is_dir():
            return folder
    return None


def _ade_names(folder):
    for name in ("objectInfo150.txt", "objectInfo150.csv"):
        path = folder / name
        if path.is_file():
            rows = [r for r in path.read_text().splitlines()[1:] if r.strip()]
            sep = "\t" if "\t" in rows[0] else ","
            return [r.split(sep)[-1].strip().split(";")[0] for r in rows]
    return [f"class_{k + 1}" for k in range(150)]


def read_ade(root, task, split):
    if task != "segmentation":
        raise ValueError(f"{root}: ADE20K is read for segmentation (it has no boxes here)")
    folder = find_ade(root)
    part = "training" if split == "train" else "validation"
    classes = _ade_names(folder)
    files = sorted(p for p in (folder / "images" / part).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images, masks = [], []
    for p in files:
        im = _read_image(p)
        raw = _read_mask(folder / "annotations" / part / f"{p.stem}.png", im, None)
        mask = torch.where(raw == 0, torch.full_like(raw, IGNORE), raw - 1)
        bad = (mask >= len(classes)) & (mask != IGNORE)
        if bad.any():
            raise ValueError(f"{folder / 'annotations' / part / (p.stem + '.png')}: mask index "
                             f"{int(mask[bad].max()) + 1} is not one of the {len(classes)} classes")
        images.append(im)
        masks.append(mask)
    return DenseDataset(images, masks, classes, task, "ade20k", str(folder), split, [p.name for p in files])


# --- COCO ---------------------------------------------------------------------------------------------------
def _coco_json(root, split):
    want = "train" if split == "train" else "val"
    found = sorted((Path(root) / "annotations").glob(f"instances_{want}*.json"))
    return found[0] if found else None


def read_coco(root, task, split):
    if task != "detection":
        raise ValueError(f"{root}: COCO is read for detection (masks come from VOC, ADE20K or a mask folder)")
    root = Path(root)
    path = _coco_json(root, split)
    if path is None:
        raise ValueError(f"{root / 'annotations'}: no instances_{'train' if split == 'train' else 'val'}*.json")
    suffix = path.stem[len("instances_"):]
    image_dir = next((d for d in (root / suffix, root / ("train" if split == "train" else "val"), root / "images",
                                  root / "images" / suffix) if d.is_dir()), None)
    if image_dir is None:
        raise ValueError(f"{root}: no image folder for {path.name} (looked for {suffix}/, train|val/, images/)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    index = {c["id"]: k + 1 for k, c in enumerate(cats)}
    per_image = {im["id"]: [] for im in data.get("images", [])}
    for a in data.get("annotations", []):
        if a["image_id"] not in per_image:
            raise ValueError(f"{path}: annotation {a.get('id')} refers to image {a['image_id']}, which is not listed")
        if a["category_id"] not in index:
            raise ValueError(f"{path}: annotation {a.get('id')} has category {a['category_id']}, not one of the "
                             f"{len(index)} categories")
        if not a.get("iscrowd"):
            per_image[a["image_id"]].append(a)
    images, targets, files = [], [], []
    for im in data.get("images", []):
        image = _read_image(image_dir / im["file_name"])
        anns = per_image[im["id"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        where = f"{path} image {im['file_name']}"
        targets.append({"boxes": _check_boxes(boxes, image, where),
                        "labels": torch.tensor([index[a["category_id"]] for a in anns], dtype=torch.int64)})
        images.append(image)
        files.append(im["file_name"])
    return DenseDataset(images, targets, ["background"] + [c["name"] for c in cats], task, "coco", str(root), split,
                        files)


# --- a folder of images with same-named masks ---------------------------------------------------------------
def _mask_folder_pairs(root, split):
    root = Path(root)
    part = "train" if split == "train" else "val"
    if (root / part / "images").is_dir():
        base = root / part
        names = sorted(p for p in (base / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(p, base / "masks" / f"{p.stem}.png") for p in names]
    names = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if (root / f"{part}.txt").is_file():
        keep = set(_read_ids(root / f"{part}.txt"))
        names = [p for p in names if p.stem in keep or p.name in keep]
    else:   # every 5th name (sorted) is validation
        names = [p for i, p in enumerate(names) if (i % 5 == 4) == (part == "val")]
    return [(p, root / "masks" / f"{p.stem}.png") for p in names]


def read_mask_folder(root, task, split):
    if task != "segmentation":
        raise ValueError(f"{root}: a folder of images and masks is read for segmentation")
    root = Path(root)
    listed = _labels_txt(root)
    pairs = _mask_folder_pairs(root, split)
    if not pairs:
        raise ValueError(f"{root}: no images for the {split} split")
    images = [_read_image(p) for p, _ in pairs]
    masks = [_read_mask(m, im, len(listed) if listed else None) for (_, m), im in zip(pairs, images)]
    if listed:
        classes = listed
    else:
        top = max((int(m[m != IGNORE].max()) for m in masks if (m != IGNORE).any()), default=0)
        classes = [f"class_{k}" for k in range(top + 1)]
    return DenseDataset(images, masks, classes, task, "masks", str(root), split, [p.name for p, _ in pairs])


def detect_layout(root):
    """'voc' | 'ade20k' | 'coco' | 'masks' for a folder, or a ValueError saying what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (dense data is a VOC, ADE20K, COCO or images+masks folder)")
    if find_ade(root):
        return "ade20k"
    if find_voc(root):
        return "voc"
    if (root / "annotations").is_dir() and list((root / "annotations").glob("instances_*.json")):
        return "coco"
    if (root / "images").is_dir() and (root / "masks").is_dir() or (root / "train" / "images").is_dir():
        return "masks"
    raise ValueError(f"{root}: not a dense-prediction folder: found none of JPEGImages/ (VOC), "
                     f"ADEChallengeData2016/ (ADE20K), annotations/instances_*.json (COCO), images/ + masks/")


READERS = {"voc": read_voc, "ade20k": read_ade, "coco": read_coco, "masks": read_mask_folder}


def read_dense(root, task, split):
    """The `split` ("train" | "test") of the dense dataset at `root` for `task` (module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown dense task {task!r}; choose {' or '.join(TASKS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    ds = READERS[detect_layout(root)](root, task, split)
    if not len(ds):
        raise ValueError(f"{root}: the {split} split holds no images")
    return ds


# --- a dataset named, not given as a folder -----------------------------------------------------------------
NAMED = {"ade20k": ("ADEChallengeData2016", "ade20k", "ADE20K"), "voc": ("VOCdevkit/VOC2012", "VOC2012", "voc", "VOC"),
         "coco": ("coco", "COCO")}


def find_dense(name, data_dir=None):
    """The folder of a dense dataset named ade20k | voc | coco under `data_dir`, $MIXLAB_DATA or ~/.cache/mixlab
    (the first that holds it), or a one-line FileNotFoundError saying where it looked."""
    import os
    if name not in NAMED:
        raise ValueError(f"unknown dense dataset {name!r}; name one of {', '.join(NAMED)} or give its folder")
    roots = [Path(r).expanduser() for r in (data_dir, os.environ.get("MIXLAB_DATA"), "~/.cache/mixlab") if r]
    for root in roots:
        for sub in NAMED[name]:
            folder = root / sub
            if folder.is_dir():
                try:
                    if detect_layout(folder) in (name, "ade20k" if name == "ade20k" else name):
                        return folder
                except ValueError:
                    continue
    raise FileNotFoundError(f"{name}: no {' or '.join(NAMED[name])} folder under {', '.join(map(str, roots))} "
                            f"(download it there, or give the folder as --data)")
