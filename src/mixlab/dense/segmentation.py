"""The segmentation task of the training engine (`mixlab.train.tasks` lists what a task supplies; the data and
model are `task.DenseTask`'s): a backbone + DeepLabv3 (or FPN) head learns per-pixel cross-entropy.

    loss        Σ over the rank's images of (mean over the image's non-ignored pixels of −log p(y | x)) × scale,
                ignore_index 255; the logits are upsampled bilinearly to the input size before the loss
    evaluate    test loss (the same per-image mean, averaged over images), mIoU and pixel accuracy
                (`metrics`: one confusion matrix summed over the ranks' shards, so any world size scores alike)
    best epoch  the highest test mIoU
"""
import torch
import torch.nn.functional as F

from ..train import distributed
from .metrics import confusion_matrix, segmentation_scores
from .readers import IGNORE
from .task import DenseTask


def per_image_loss(logits, masks):
    """[B] mean cross-entropy over each image's non-ignored pixels (0 for an image with none)."""
    pixel = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE, reduction="none")
    valid = (masks != IGNORE).flatten(1).sum(1)
    return pixel.flatten(1).sum(1) / valid.clamp_min(1)


def score(model, batches, num_classes, device, autocast, d=None):
    """{test_loss, test_miou, test_pixel_acc, n} of `model` over (x, masks) batches, summed over DDP ranks."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for x, masks in batches:
            x, masks = x.to(device), masks.to(device)
            with autocast():
                logits = model(x)
            totals += torch.stack([per_image_loss(logits, masks).double().sum(),
                                   torch.tensor(float(len(x)), dtype=torch.float64, device=device)])
            conf += confusion_matrix(logits.argmax(1), masks, num_classes)
    if d is not None:
        distributed.all_reduce_sum(conf, d)
        distributed.all_reduce_sum(totals, d)
    scores = segmentation_scores(conf.cpu())
    return {"test_loss": totals[0].item() / max(totals[1].item(), 1.0), "test_miou": scores["miou"],
            "test_pixel_acc": scores["pixel_acc"], "n": int(totals[1].item())}


class SegmentationTask(DenseTask):
    name = "segmentation"
    best_metric, higher_is_better = "test_miou", True
    metric_fields = ("epoch", "lr", "train_loss", "train_pixel_acc", "test_loss", "test_miou", "test_pixel_acc",
                     "seconds", "train_pass_seconds")

    def loss(self, run, x, y, step, scale):
        with run.precision.autocast():
            logits = run.net(x)
        loss = per_image_loss(logits, y).sum() * scale
        valid = y != IGNORE
        correct = ((logits.detach().argmax(1) == y) & valid).sum() if scale else torch.zeros((), device=x.device)
        count = valid.sum() if scale else torch.zeros((), device=x.device)
        return loss, torch.stack([correct.to(torch.float64), count.to(torch.float64)])

    def train_row(self, totals):
        return {"train_pixel_acc": 100.0 * totals[0].item() / max(totals[1].item(), 1)}

    def evaluate(self, run, epoch):
        result = score(run.eval_model, self.test_loader(run), run.train_ds.num_classes, run.device,
                       run.precision.autocast, run.dist)
        result.pop("n")
        if result["test_miou"] is None:   # an empty test split cannot happen (the readers refuse it)
            result.update(test_miou=0.0, test_pixel_acc=0.0)
        return result

    def summary(self, run, last, best):
        return {"task": self.name, "head": run.model.head, "test_miou": last.get("test_miou"),
                "test_pixel_acc": last.get("test_pixel_acc"), "test_loss": last.get("test_loss"),
                "best_test_miou": best}

    def done_line(self, summary):
        return (f"test mIoU {summary['test_miou']:.2f}%, pixel accuracy {summary['test_pixel_acc']:.2f}% (best mIoU "
                f"{summary['best_test_miou']:.2f}% at epoch {summary['best_epoch']})")

    @staticmethod
    def evaluate_saved(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None,
                       subset=None, batch_size=1000):
        """A finished segmentation run's {loss, miou, pixel_acc, n, …} on a split of its folder (or `data`)."""
        model, loader, weights_file, precision = DenseTask.saved_model(run, config, data, split, weights, device,
                                                                       data_dir, subset, batch_size)
        r = score(model, loader, int(config["num_classes"]), precision.device, precision.autocast)
        return {"loss": r["test_loss"], "top1": None, "miou": r["test_miou"], "pixel_acc": r["test_pixel_acc"],
                "n": r["n"], "dataset": config.get("dataset"), "split": split, "weights": weights_file,
                "model": config["model"], "precision": precision.name}
