"""What a run learns: the loss of a batch, the test metrics, and the metric that picks the best epoch.

The engine (engine.py) owns everything the learning problems share — the loop, the run directory, precision,
DDP, EMA, the non-finite guards and bit-exact resume. A task owns only what differs:

    model_kwargs(train_ds)              what the data decides about the model (classes, channels, size)
    setup(run)                          check the built run and prepare; returns entries for config.json
    loss(run, x, y, step, scale)        Σ over the rank's samples of the per-sample loss × scale, and the
                                        batch's contribution to the epoch's training statistics
    train_row(totals)                   those statistics for metrics.csv
    evaluate(run, epoch)                the test metrics of the evaluated model (must hold "test_loss")
    after_commit(run, row)              anything written after an epoch is committed (e.g. sample grids);
                                        on resume it is called again for the last committed epoch
    summary(run, last, best)            the task's fields of summary.json

`ClassificationTask` is the default; `mixlab.diffusion.task` provides the denoising task for the UNets.
"""
import torch
import torch.nn.functional as F


class ClassificationTask:
    name = "classification"
    best_metric, higher_is_better = "test_top1", True
    metric_fields = ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "seconds",
                     "train_pass_seconds")
    watch_collapse = True     # a classifier at chance after learning is flagged (guards.collapse_status)

    def model_kwargs(self, train_ds):
        c, h, _ = train_ds.image_size
        return {"num_classes": train_ds.num_classes, "in_chans": c, "img_size": h}

    def setup(self, run):
        if run.ema is not None:   # the EMA weights are evaluated (and saved); the live ones alongside them
            self.metric_fields = self.metric_fields + ("live_test_loss", "live_test_top1")
        return {}

    def loss(self, run, x, y, step, scale):
        with run.precision.autocast():
            logits = run.net(x)
        if y.dim() == 2:   # Mixup/CutMix soft targets (label smoothing already in them): −Σ_k y_k log p_k
            loss = -(y * F.log_softmax(logits.float(), dim=1)).sum() * scale
            y = y.argmax(1)   # train top-1 counts the dominant class of each mixed image
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=run.recipe.label_smoothing,
                                   reduction="sum") * scale
        correct = (logits.detach().argmax(1) == y).sum() if scale else torch.zeros((), device=x.device)
        return loss, torch.stack([correct.to(torch.float64),
                                  torch.tensor(float(len(y) if scale else 0), device=x.device, dtype=torch.float64)])

    def train_row(self, totals):
        return {"train_top1": 100.0 * totals[0].item() / max(totals[1].item(), 1)}

    def evaluate(self, run, epoch):
        from .engine import epoch_seed
        from .evaluate import evaluate
        recipe = run.recipe
        augment = (recipe.crop_padding, recipe.flip, epoch_seed(run.config.seed, epoch, 0)) \
            if recipe.test_augment else None
        result = evaluate(run.eval_model, run.test_ds, run.device, run.mean, run.std, run.config.eval_batch_size,
                          run.dist, run.precision, augment)
        row = {"test_loss": result["loss"], "test_top1": result["top1"]}
        if run.ema is not None:
            live = evaluate(run.model, run.test_ds, run.device, run.mean, run.std, run.config.eval_batch_size,
                            run.dist, run.precision, augment)
            row.update(live_test_loss=live["loss"], live_test_top1=live["top1"])
        return row

    def after_commit(self, run, row):
        pass

    def summary(self, run, last, best):
        out = {"test_top1": last.get("test_top1"), "test_loss": last.get("test_loss"), "best_test_top1": best}
        if run.ema is not None:   # test_* are the EMA weights'; live_* the weights the optimiser holds
            out.update(ema=True, live_test_top1=last.get("live_test_top1"), live_test_loss=last.get("live_test_loss"))
        return out

    def done_line(self, summary):
        return (f"test top-1 {summary['test_top1']:.2f}% (best {summary['best_test_top1']:.2f}% at epoch "
                f"{summary['best_epoch']})")


TASKS = {"classification": ClassificationTask}


def task_for(model_name, task="auto"):
    """The task a model learns: `auto` reads the model's registered family (UNets denoise, the rest classify)."""
    from ..registry import model_cfg
    if task in (None, "auto"):
        task = model_cfg(model_name).get("task", "classification")
    if task == "diffusion" and "diffusion" not in TASKS:
        from ..diffusion import task as _  # noqa: F401  (registers the diffusion task)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[task]()
