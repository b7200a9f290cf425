"""Dense-prediction data: the scene generator's VOC / COCO / ADE20K folders read back through the real readers
and agree; every bad-target rule; image and target follow flip and crop exactly."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from mixlab.dense import apply, joint_transform, make_scenes, read_dense


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return make_scenes(root, train=6, val=3, size=40, num_classes=3, source="synthetic", seed=1)


def test_layouts_read_back_the_same_scenes(scenes):
    for split, n in (("train", 6), ("test", 3)):
        seg_voc = read_dense(scenes["voc"], "segmentation", split)
        seg_ade = read_dense(scenes["ade20k"], "segmentation", split)
        det_voc = read_dense(scenes["voc"], "detection", split)
        det_coco = read_dense(scenes["coco"], "detection", split)
        assert len(seg_voc) == len(seg_ade) == len(det_voc) == len(det_coco) == n
        assert seg_voc.classes == seg_ade.classes == det_voc.classes == det_coco.classes == \
            ["background"] + scenes["classes"]
        for i in range(n):
            assert torch.equal(seg_voc.targets[i], seg_ade.targets[i])          # ADE's index-1 rule undone
            assert torch.equal(det_voc.targets[i]["boxes"], det_coco.targets[i]["boxes"])   # VOC 1-based boxes
            assert torch.equal(det_voc.targets[i]["labels"], det_coco.targets[i]["labels"])
            mask = seg_voc.targets[i]
            for (x0, y0, x1, y1), k in zip(det_voc.targets[i]["boxes"].long().tolist(),
                                           det_voc.targets[i]["labels"].tolist()):
                inside = mask[y0:y1, x0:x1] == k   # the box is the tight box of (some of) its class's pixels
                assert inside.any(0)[[0, -1]].all() and inside.any(1)[[0, -1]].all()


def test_mask_folder_and_labels_txt(tmp_path, scenes):
    voc = read_dense(scenes["voc"], "segmentation", "train")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(5):
        Image.fromarray(voc.images[i].permute(1, 2, 0).numpy()).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(voc.targets[i].to(torch.uint8).numpy()).save(tmp_path / "masks" / f"s{i}.png")
    (tmp_path / "labels.txt").write_text("\n".join(voc.classes) + "\n")
    train, test = read_dense(tmp_path, "segmentation", "train"), read_dense(tmp_path, "segmentation", "test")
    assert (len(train), len(test)) == (4, 1) and train.classes == voc.classes     # every 5th name is val
    assert torch.equal(test.targets[0], voc.targets[4]) and torch.equal(test.images[0], voc.images[4])


def _copy_voc(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_bad_targets_are_one_line_errors(tmp_path, scenes):
    voc = _copy_voc(scenes["voc"], tmp_path / "voc")
    first = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    mask_path = voc / "SegmentationClass" / f"{first}.png"
    good = Image.open(mask_path).copy()
    good.resize((20, 20)).save(mask_path)                              # a mask of another size
    with pytest.raises(ValueError, match="mask is 20x20 but its image is 40x40"):
        read_dense(voc, "segmentation", "train")
    bad = torch.from_numpy(np.asarray(good).copy())
    bad[0, 0] = 9                                                      # an unknown class index (labels.txt: 4)
    img = Image.fromarray(bad.numpy(), mode="P")
    img.putpalette(good.getpalette())
    img.save(mask_path)
    with pytest.raises(ValueError, match="mask index 9 is not a class"):
        read_dense(voc, "segmentation", "train")
    good.save(mask_path)
    xml = voc / "Annotations" / f"{first}.xml"
    text = xml.read_text()
    xml.write_text(text.replace(f"<name>{scenes['classes'][0]}</name>", "<name>zebra</name>")
                   .replace(f"<name>{scenes['classes'][1]}</name>", "<name>zebra</name>")
                   .replace(f"<name>{scenes['classes'][2]}</name>", "<name>zebra</name>"))
    with pytest.raises(ValueError, match="object class 'zebra' is not one of"):
        read_dense(voc, "detection", "train")
    import re
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>60</xmax>", text))   # a box outside the image
    with pytest.raises(ValueError, match="lies outside the 40x40 image"):
        read_dense(voc, "detection", "train")
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>1</xmax>", text))    # a box with no area
    with pytest.raises(ValueError, match="has no area"):
        read_dense(voc, "detection", "train")


def test_coco_rules(tmp_path, scenes):
    import shutil
    coco = tmp_path / "coco"
    shutil.copytree(scenes["coco"], coco)
    path = coco / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["images"][0]["id"]
    kept = [a for a in data["annotations"] if a["image_id"] != first]
    path.write_text(json.dumps(dict(data, annotations=kept)))           # an image without annotations: kept
    ds = read_dense(coco, "detection", "train")
    assert len(ds) == 6 and ds.targets[0]["boxes"].shape == (0, 4) and ds.targets[0]["labels"].shape == (0,)
    wrong = [dict(a, category_id=99) if i == 0 else a for i, a in enumerate(data["annotations"])]
    path.write_text(json.dumps(dict(data, annotations=wrong)))          # an unknown category id
    with pytest.raises(ValueError, match="category 99, not one of the 3 categories"):
        read_dense(coco, "detection", "train")
    with pytest.raises(ValueError, match="not a dense-prediction folder"):
        read_dense(tmp_path, "segmentation", "train")


def test_box_and_mask_follow_flip_and_crop_exactly():
    image = torch.zeros(3, 10, 12, dtype=torch.uint8)
    mask = torch.zeros(10, 12, dtype=torch.int64)
    mask[2:5, 3:7] = 1                                   # object: rows 2..4, cols 3..6 → box (3, 2, 7, 5)
    image[:, 2:5, 3:7] = 200
    img, tgt = tv_tensors.Image(image), tv_tensors.Mask(mask)
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[3.0, 2.0, 7.0, 5.0]]), format="XYXY", canvas_size=(10, 12))
    fb, fm = TF.horizontal_flip(boxes), TF.horizontal_flip(tgt)
    assert fb.tolist() == [[12 - 7, 2.0, 12 - 3, 5.0]]                  # x → W − x
    assert torch.equal(fm.as_subclass(torch.Tensor), mask.flip(-1))
    cb, cm = TF.crop(boxes, 1, 4, 6, 6), TF.crop(tgt, 1, 4, 6, 6)      # top 1, left 4, 6×6
    assert cb.tolist() == [[0.0, 1.0, 3.0, 4.0]]                        # shifted by (−4, −1), clamped at 0
    assert torch.equal(cm.as_subclass(torch.Tensor), mask[1:7, 4:10])
    # the training pipeline: with a fixed seed, the same draw moves image, mask and box together
    tf = joint_transform(8, train=True)
    out_img, out_mask = apply(tf, image, mask, seed=5)
    again_img, again_box = apply(tf, image, {"boxes": boxes.as_subclass(torch.Tensor), "labels": torch.tensor([1])},
                                 seed=5)
    assert torch.equal(out_img, again_img) and out_mask.shape == (8, 8)
    assert set(out_mask.unique().tolist()) <= {0, 1}                     # nearest: no new class values
    ys, xs = torch.nonzero(out_mask == 1, as_tuple=True)
    if len(ys):   # the box is (within one resized pixel) the box of the transformed mask
        x0, y0, x1, y1 = again_box["boxes"][0].tolist()
        assert abs(x0 - xs.min().item()) <= 1 and abs(x1 - xs.max().item() - 1) <= 1
        assert abs(y0 - ys.min().item()) <= 1 and abs(y1 - ys.max().item() - 1) <= 1


def test_boxes_leaving_the_crop_are_dropped():
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [12.0, 12.0, 18.0, 18.0]]), "labels": torch.tensor([1, 2])}
    from torchvision.transforms import v2
    tf = v2.Compose([v2.RandomCrop(10), v2.SanitizeBoundingBoxes(min_size=1)])
    # some 10×10 crop keeps only the second box, clamped to the crop
    for seed in range(20):
        img, tgt = apply(tf, image, target, seed=seed)
        if tgt["labels"].tolist() == [2]:
            assert (tgt["boxes"] >= 0).all() and (tgt["boxes"] <= 10).all()
            break
    else:
        pytest.fail("no crop kept the second box only")
