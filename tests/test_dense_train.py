"""Dense prediction in the engine: the segmentation and detection tasks on generated scenes (vit_demo backbone at
32 px, a few images), their metrics on hand-computed cases, resume, eval, predict, ONNX and the reproduce plan."""
import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mixlab.dense import make_scenes
from mixlab.dense.metrics import confusion_matrix, segmentation_scores
from mixlab.train import TrainConfig, train

BACKBONE = dict(model="vit_demo", model_kwargs={"patch_size": 4}, batch_size=8, seed=0, device="cpu",
                overrides={"img_size": 32, "warmup_epochs": 0})
SEG_KEYS = ("test_miou", "test_pixel_acc", "best_test_miou", "test_loss", "task", "head")
DET_KEYS = ("test_map", "test_map50", "best_test_map", "test_loss", "task", "head")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_scenes(tmp_path_factory.mktemp("scenes"), train=16, val=8, size=32, num_classes=3,
                       source="synthetic", seed=1)


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


# --- metrics on hand-computed cases ---------------------------------------------------------------------------
def test_miou_and_pixel_accuracy_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 0]])
    conf = confusion_matrix(pred, target, 4)
    # class 0: TP 2, FP 1 (a 2 predicted 0), FN 1 -> 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2;
    # class 3 absent from both: not averaged. Pixel accuracy: 5 of 7 non-ignored pixels.
    s = segmentation_scores(conf)
    assert s["miou"] == pytest.approx(100 * (2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_acc"] == pytest.approx(100 * 5 / 7)
    from torchmetrics.classification import MulticlassJaccardIndex
    tm = MulticlassJaccardIndex(num_classes=3, ignore_index=255, average="macro")
    assert 100 * float(tm(pred.clamp(max=2), target)) == pytest.approx(s["miou"], abs=1e-4)


def test_map_by_hand():
    pytest.importorskip("pycocotools")
    from mixlab.dense.detection import map_metric
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}]
    perfect = [{"boxes": gt[0]["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2])}]
    m = map_metric()
    m.update(perfect, gt)
    r = m.compute()
    assert float(r["map"]) == pytest.approx(1.0) and float(r["map_50"]) == pytest.approx(1.0)
    # class 2's box shifted to IoU 1/3 (< 0.5): class 1 stays perfect, class 2 scores 0 -> mAP 0.5
    shifted = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [25, 20, 35, 30]]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([1, 2])}]
    m = map_metric()
    m.update(shifted, gt)
    r = m.compute()
    assert float(r["map_50"]) == pytest.approx(0.5) and float(r["map"]) == pytest.approx(0.5)


# --- one-line errors ------------------------------------------------------------------------------------------
def test_bad_requests_are_one_line_errors(scenes, tmp_path):
    from mixlab.dense.model import DenseModel
    cases = [
        (lambda: confusion_matrix(torch.zeros(2, 2), torch.tensor([[0, 7], [0, 0]]), 3), "target class 7"),
        (lambda: confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 2), 3), "differ in shape"),
        (lambda: DenseModel("vit_demo", "segmentation", "retinanet", 3, 32, backbone_kwargs={"patch_size": 4}),
         "unknown segmentation head"),
        (lambda: DenseModel("vit_demo", "depth", None, 3, 32), "unknown dense task"),
        (lambda: train(TrainConfig(data=str(scenes["voc"]), task="segmentation", head="fcos", out=str(tmp_path / "a"),
                                   **BACKBONE), log=None), "unknown segmentation head"),
        (lambda: train(TrainConfig(data=str(scenes["voc"]), task="keypoints", out=str(tmp_path / "b"), **BACKBONE),
                       log=None), "unknown task"),
        (lambda: train(TrainConfig(data=str(scenes["ade20k"]), task="detection", out=str(tmp_path / "c"),
                                   **BACKBONE), log=None), "ADE20K is read for segmentation"),
    ]
    for make, words in cases:
        with pytest.raises(ValueError) as e:
            make()
        assert words in str(e.value) and "\n" not in str(e.value)


# --- training, resume, eval, predict, export ----------------------------------------------------------------------
def test_segmentation_trains_scores_predicts_and_exports(scenes, tmp_path):
    run = tmp_path / "seg"
    s = train(TrainConfig(data=str(scenes["voc"]), task="segmentation", head="fpn", epochs=1, out=str(run),
                          **BACKBONE), log=None)
    assert all(s[k] is not None for k in SEG_KEYS) and s["task"] == "segmentation" and s["head"] == "fpn"
    assert 0 <= s["test_miou"] <= 100 and 0 <= s["test_pixel_acc"] <= 100
    assert [r["test_miou"] for r in rows(run)] and (run / "curves.png").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "segmentation" and config["dense"]["head"] == "fpn" and config["model"] == "vit_demo"
    from mixlab.train import evaluate_run
    r = evaluate_run(run)
    assert r["miou"] == pytest.approx(s["test_miou"]) and r["pixel_acc"] == pytest.approx(s["test_pixel_acc"])
    from mixlab.dense.predict import predict_dense
    done = predict_dense(run, [Path(scenes["voc"]) / "JPEGImages"], tmp_path / "pics")
    from PIL import Image
    with Image.open(done[0][1]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    pytest.importorskip("onnxruntime")
    from mixlab.export import export_run
    report = export_run(run, tmp_path / "seg.onnx", verify_batch=2)
    assert report.ok and report.max_abs_diff is not None and report.max_abs_diff < 1e-3


def test_detection_trains_scores_and_predicts(scenes, tmp_path):
    pytest.importorskip("pycocotools")
    run = tmp_path / "det"
    s = train(TrainConfig(data=str(scenes["coco"]), task="detection", epochs=1, out=str(run), **BACKBONE), log=None)
    assert all(s[k] is not None for k in DET_KEYS) and s["head"] == "retinanet"
    assert 0 <= s["test_map"] <= 100 and 0 <= s["test_map50"] <= 100
    from mixlab.train import evaluate_run
    r = evaluate_run(run)
    assert r["map"] == pytest.approx(s["test_map"]) and r["loss"] == pytest.approx(s["test_loss"], rel=1e-5)
    from mixlab.dense.predict import predict_dense
    done = predict_dense(run, [Path(scenes["coco"]) / "val"], tmp_path / "pics", min_score=0.0)
    assert len(done) == 8 and all((tmp_path / "pics").glob("*.png"))


def test_frozen_backbone_trains_only_the_head_and_rebuilds(scenes, tmp_path):
    """--freeze-backbone: after an epoch every backbone tensor (weights and BN statistics) is the seed's initial
    one and the head's have moved; config.json records it, so eval rebuilds the same model; a classification
    run refuses the flag in one line."""
    from mixlab.dense.model import build_dense, load_dense
    run = tmp_path / "frozen"
    args = dict(BACKBONE, model="resnet164", model_kwargs={"depth": 11})
    s = train(TrainConfig(data=str(scenes["voc"]), task="segmentation", epochs=1, out=str(run), freeze_backbone=True,
                          **args), log=None)
    config = json.loads((run / "config.json").read_text())
    assert config["dense"]["frozen_backbone"] is True and config["train"]["freeze_backbone"] is True
    torch.manual_seed(0)   # the engine seeds torch with the run's seed before it builds the model
    start = build_dense(config).state_dict()
    trained = load_file(str(run / "last.safetensors"))
    body = [k for k in trained if k.startswith("backbone.")]
    head = [k for k in trained if k.startswith("decoder.") and trained[k].is_floating_point()]
    assert body and all(torch.equal(trained[k], start[k]) for k in body)
    assert any(not torch.equal(trained[k], start[k]) for k in head)
    model = load_dense(run)
    assert model.train().body.training is False and model.decoder.training is True
    from mixlab.train import evaluate_run
    assert evaluate_run(run)["miou"] == pytest.approx(s["test_miou"])
    with pytest.raises(ValueError, match="--freeze-backbone is for the dense tasks"):
        train(TrainConfig(data="synthetic", freeze_backbone=True, out=str(tmp_path / "cls"), **BACKBONE), log=None)


def test_an_affnet_backbone_is_atrous_and_records_its_output_stride():
    """DeepLabv3 on AFFNet: output stride 8 unless --model-kwargs sets one (the map is 8×8 at 64 px, not 2×2);
    the other heads: the largest stride leaving an 8-px last map (8 at 64 px, 16 at 128, 32 at 256); recorded in
    the dense block, not in the backbone's asked kwargs; a backbone without the option is left alone."""
    from mixlab.dense.model import DEEPLAB_OUTPUT_STRIDE, DenseModel
    seg = DenseModel("affnet_et", "segmentation", None, 3, 64)
    assert seg.dense["output_stride"] == DEEPLAB_OUTPUT_STRIDE == 8 and "output_stride" not in seg.init_kwargs
    with torch.no_grad():
        assert seg.backbone(torch.zeros(1, 3, 64, 64))[-1].shape[-1] == 8
    own = DenseModel("affnet_et", "segmentation", None, 3, 64, backbone_kwargs={"output_stride": 16})
    assert "output_stride" not in own.dense and own.backbone.reductions[-1] == 16
    assert [DenseModel("affnet_et", "segmentation", "fpn", 3, s).dense["output_stride"] for s in (64, 128, 256)] \
        == [8, 16, 32]
    assert DenseModel("affnet_et", "detection", None, 3, 64).detector.backbone.body.reductions == [8, 8, 8]
    assert "output_stride" not in DenseModel("vit_demo", "segmentation", None, 3, 32, backbone_kwargs={"patch_size": 4}).dense


def test_segmentation_resume_is_bit_exact(scenes, tmp_path):
    """A run stopped after epoch 1 and resumed to 2 equals a straight 2-epoch run (a constant schedule, so the
    1-epoch run's lr is the 2-epoch run's; a kill -9 mid-run is tests/test_train.py's, through the same engine)."""
    args = dict(data=str(scenes["voc"]), task="segmentation",
                **{**BACKBONE, "overrides": {**BACKBONE["overrides"], "schedule": "constant"}})
    train(TrainConfig(epochs=2, out=str(tmp_path / "a"), **args), log=None)
    train(TrainConfig(epochs=1, out=str(tmp_path / "b"), **args), log=None)
    train(TrainConfig(resume=str(tmp_path / "b"), epochs=2), log=None)
    keys = ("epoch", "train_loss", "train_pixel_acc", "test_loss", "test_miou", "test_pixel_acc")
    assert [[r[k] for k in keys] for r in rows(tmp_path / "a")] == [[r[k] for k in keys] for r in rows(tmp_path / "b")]
    wa, wb = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_two_rank_segmentation_matches_one_process(scenes, tmp_path):
    import os
    import subprocess
    import sys
    single = train(TrainConfig(data=str(scenes["voc"]), task="segmentation", head="fpn", epochs=1,
                               out=str(tmp_path / "one"), **BACKBONE), log=None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mixlab.cli",
           "train", "--model", "vit_demo", "--model-kwargs", '{"patch_size": 4}', "--data", str(scenes["voc"]),
           "--task", "segmentation", "--head", "fpn", "--epochs", "1", "--batch-size", "8", "--img-size", "32",
           "--set", "warmup_epochs=0", "--device", "cpu", "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2
    a, b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert float(b[0]["train_loss"]) == pytest.approx(float(a[0]["train_loss"]), rel=1e-4)
    assert two["test_miou"] == pytest.approx(single["test_miou"], abs=1e-3)


# --- the reproduce plan -----------------------------------------------------------------------------------------
def test_affnet_seg_plan_shows_published_rows_unmeasured(tmp_path):
    from mixlab.reproduce import reproduce
    report = reproduce("affnet-seg", dry_run=True, out=str(tmp_path / "r"), data_dir=str(tmp_path), log=lambda *_: None)
    got = {(r["model"], r["dataset"]): (r["published"], r["status"]) for r in report["rows"]}
    assert got[("affnet_t", "ade20k")] == (36.9, "unmeasured") and got[("affnet", "voc")] == (80.5, "unmeasured")
    assert len(got) == 6 and all(status == "unmeasured" for _, status in got.values())
