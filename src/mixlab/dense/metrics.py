"""Segmentation scores from a confusion matrix (exact, and summable over DDP ranks before scoring).

    C[t, p] = #pixels of true class t predicted as p, over pixels whose target is not IGNORE (255)
    IoU_k   = C[k, k] / (Σ_p C[k, p] + Σ_t C[t, k] − C[k, k])        (TP / (TP + FP + FN))
    mIoU    = mean of IoU_k over the classes present (union > 0)     (torchmetrics MulticlassJaccardIndex,
                                                                      average='macro', ignore_index=255)
    pixel accuracy = Σ_k C[k, k] / Σ C                               (over non-ignored pixels)
Both are returned in percent.
"""
import torch

from .readers import IGNORE


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C [K, K] int64 of predicted and true class maps of any (equal) shape; IGNORE targets are left out."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != IGNORE
    t, p = target[keep].long(), pred[keep].long()
    if len(t) and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"target class {int(t.max())} is not one of 0..{num_classes - 1} or {IGNORE} (ignore)")
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segmentation_scores(conf: torch.Tensor) -> dict:
    """{miou, pixel_acc} in percent from a confusion matrix (module docstring); None where nothing was scored."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    total = conf.sum()
    miou = 100.0 * float((tp[present] / union[present]).mean()) if present.any() else None
    acc = 100.0 * float(tp.sum() / total) if total > 0 else None
    return {"miou": miou, "pixel_acc": acc}
