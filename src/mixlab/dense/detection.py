"""The detection task of the training engine (`mixlab.train.tasks` lists what a task supplies; the data and
model are `task.DenseTask`'s): a backbone + FPN + torchvision RetinaNet (or FCOS) learns its detector's losses.

    loss        the detector's loss dict summed (RetinaNet: focal classification + L1 box regression, each the
                mean over the batch's images of an image's sum over its normalised anchors) × batch size ×
                scale: Σ over the rank's images × W / global batch, as the engine wants. (FCOS normalises by
                the batch's foreground count, so its DDP steps are close to, not exactly, one process's.)
    evaluate    test loss: the same losses with the detector's parts in eval mode (no dropout, no BatchNorm
                update: only the top module's `training` flag is raised, which makes torchvision return
                losses); COCO mAP@[.5:.95] and mAP@0.5 of the detections (torchmetrics
                MeanAveragePrecision, iou_type bbox, pycocotools or faster_coco_eval backend), in percent,
                synced over the DDP ranks by torchmetrics
    best epoch  the highest test mAP
"""
import torch

from ..train import distributed
from .task import DenseTask


def map_metric():
    """torchmetrics MeanAveragePrecision (bbox) with the COCO backend that is installed."""
    import importlib.util

    from torchmetrics.detection import MeanAveragePrecision
    for backend, module in (("faster_coco_eval", "faster_coco_eval"), ("pycocotools", "pycocotools")):
        if importlib.util.find_spec(module) is not None:
            return MeanAveragePrecision(iou_type="bbox", backend=backend)
    raise ValueError("detection mAP needs pycocotools or faster_coco_eval: pip install 'mixlab[test]' "
                     "(or pip install pycocotools)")


def _eval_losses(detector, images, targets):
    """The detector's loss dict with every submodule in eval mode (module docstring)."""
    detector.training = True
    try:
        return detector(images, targets)
    finally:
        detector.training = False


def score(model, batches, device, autocast, d=None):
    """{test_loss, test_map, test_map50, n} of a DenseModel detector over (x, targets) batches."""
    metric = map_metric()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    model.eval()
    detector = model.detector
    with torch.no_grad():
        for x, targets in batches:
            images = list(x.to(device))
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            with autocast():
                losses = _eval_losses(detector, images, targets)
                detections = detector(images)
            totals += torch.tensor([float(sum(losses.values())) * len(images), float(len(images))],
                                   dtype=torch.float64, device=device)
            metric.update([{k: v.float().cpu() if k != "labels" else v.cpu() for k, v in p.items()}
                           for p in detections], [{k: v.cpu() for k, v in t.items()} for t in targets])
    if d is not None:
        distributed.all_reduce_sum(totals, d)
    result = metric.compute()
    as_percent = lambda v: max(0.0, 100.0 * float(v))   # noqa: E731 (−1: no ground truth at all → 0)
    return {"test_loss": totals[0].item() / max(totals[1].item(), 1.0), "test_map": as_percent(result["map"]),
            "test_map50": as_percent(result["map_50"]), "n": int(totals[1].item())}


class DetectionTask(DenseTask):
    name = "detection"
    best_metric, higher_is_better = "test_map", True
    metric_fields = ("epoch", "lr", "train_loss", "test_loss", "test_map", "test_map50", "seconds",
                     "train_pass_seconds")

    def loss(self, run, x, y, step, scale):
        targets = [{k: v.to(x.device) for k, v in t.items()} for t in y]
        with run.precision.autocast():
            losses = run.net(x, targets)
        loss = sum(v.float() for v in losses.values()) * len(x) * scale
        return loss, torch.zeros(1, dtype=torch.float64, device=x.device)

    def train_row(self, totals):
        return {}

    def evaluate(self, run, epoch):
        result = score(run.eval_model, self.test_loader(run), run.device, run.precision.autocast, run.dist)
        result.pop("n")
        return result

    def summary(self, run, last, best):
        return {"task": self.name, "head": run.model.head, "test_map": last.get("test_map"),
                "test_map50": last.get("test_map50"), "test_loss": last.get("test_loss"), "best_test_map": best}

    def done_line(self, summary):
        return (f"test mAP {summary['test_map']:.2f}%, mAP@0.5 {summary['test_map50']:.2f}% (best mAP "
                f"{summary['best_test_map']:.2f}% at epoch {summary['best_epoch']})")

    @staticmethod
    def evaluate_saved(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None,
                       subset=None, batch_size=1000):
        """A finished detection run's {loss, map, map50, n, …} on a split of its folder (or `data`)."""
        model, loader, weights_file, precision = DenseTask.saved_model(run, config, data, split, weights, device,
                                                                       data_dir, subset, batch_size)
        r = score(model, loader, precision.device, precision.autocast)
        return {"loss": r["test_loss"], "top1": None, "map": r["test_map"], "map50": r["test_map50"], "n": r["n"],
                "dataset": config.get("dataset"), "split": split, "weights": weights_file,
                "model": config["model"], "precision": precision.name}
