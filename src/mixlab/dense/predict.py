"""`mixlab predict` on a dense run: a picture per image file.

    segmentation   the predicted class map (argmax of the logits at the run's size S, resized back to the
                   image's size with nearest neighbours) drawn over the image with the VOC colour map,
                   alpha 0.5 (torchvision.utils.draw_segmentation_masks), background (class 0) left clear
    detection      the boxes scoring at least `min_score`, scaled back to the image's size, drawn with
                   "class score" labels (torchvision.utils.draw_bounding_boxes)
Written as OUT/<image stem>.png; returns [(input path, output path, what was found)].
"""
from pathlib import Path

import torch
import torch.nn.functional as F

from .model import load_dense
from .readers import IMAGE_SUFFIXES, _read_image
from .scenes import voc_palette


def _files(paths):
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def predict_dense(run_dir, images, out_dir, weights=None, min_score=0.3):
    """Draw a dense run's predictions on image files (module docstring)."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
    model = load_dense(run_dir, weights)
    cfg = model.data_config
    size = int(cfg["input_size"][1])
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    names, colours = cfg["class_names"], voc_palette()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for path in _files(images):
        image = _read_image(path)
        h, w = image.shape[1:]
        x = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).div(255).sub(mean).div(std)
        with torch.no_grad():
            out = model(x)
        if model.task == "segmentation":
            pred = F.interpolate(out.argmax(1, keepdim=True).float(), size=(h, w), mode="nearest")[0, 0].long()
            classes = [k for k in pred.unique().tolist() if k != 0]
            masks = torch.stack([pred == k for k in classes]) if classes else torch.zeros(0, h, w, dtype=torch.bool)
            picture = draw_segmentation_masks(image, masks, alpha=0.5,
                                              colors=[tuple(colours[3 * k:3 * k + 3]) for k in classes]) \
                if classes else image
            found = ", ".join(names[k] for k in classes) or "background only"
        else:
            det = out[0]
            keep = det["scores"] >= min_score
            boxes = det["boxes"][keep] * torch.tensor([w / size, h / size, w / size, h / size])
            labels = [f"{names[int(c)]} {float(s):.2f}" for c, s in zip(det["labels"][keep], det["scores"][keep])]
            picture = draw_bounding_boxes(image, boxes, labels=labels, colors="red", width=2) if len(boxes) else image
            found = "; ".join(labels) or "no box above the score threshold"
        target = out_dir / f"{path.stem}.png"
        from PIL import Image
        Image.fromarray(picture.permute(1, 2, 0).numpy()).save(target)
        done.append((str(path), str(target), found))
    if not done:
        raise ValueError("no image files found in " + ", ".join(map(str, images)))
    return done
