"""The classification task of the training engine (`mixlab.train.tasks` lists what a task supplies): the model
learns cross-entropy on labelled images and the best epoch is the one with the highest test top-1."""
import torch
import torch.nn.functional as F

from .evaluate import evaluate
from .image_task import ImageTask
from .state import epoch_seed


def recipe_of(config: dict) -> dict:
    """The recipe a run directory's config.json recorded ({} for runs saved without one)."""
    return config.get("recipe") if isinstance(config.get("recipe"), dict) else {}


class ClassificationTask(ImageTask):
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
        recipe = run.recipe
        augment = (recipe.crop_padding, recipe.flip, epoch_seed(run.config.seed, epoch, 0)) \
            if recipe.test_augment else None
        result = evaluate(run.eval_model, run.test_ds, run.device, run.mean, run.std, run.config.eval_batch_size,
                          run.dist, run.precision, augment, recipe.eval_flip)
        row = {"test_loss": result["loss"], "test_top1": result["top1"]}
        if run.ema is not None:
            live = evaluate(run.model, run.test_ds, run.device, run.mean, run.std, run.config.eval_batch_size,
                            run.dist, run.precision, augment, recipe.eval_flip)
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

    @staticmethod
    def load_saved(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None, subset=None):
        """What scoring a classifier run's checkpoint needs: (model on `device` in eval mode, the split of its
        dataset (or `data`) at the run's eval transform, the run's `Precision`, the weights file's name:
        `weights`, else the run's default, `rundir.default_weights`)."""
        from ..checkpoint import load
        from ..data import ImageTransform, load_dataset
        from ..device import pick_device
        from ..rundir import default_weights
        from .precision import Precision

        weights_file = {"best": "best.safetensors", "last": "last.safetensors"}.get(weights, weights) or \
            default_weights(run.path)
        device = pick_device(device)
        model = load(run.path, weights=weights_file, map_location="cpu").to(device)
        train_cfg = config.get("train") if isinstance(config.get("train"), dict) else {}
        name = data or train_cfg.get("data") or config.get("dataset")
        if not name:
            raise ValueError(f"{run.path}/config.json names no dataset: pass --data")
        # the eval transform the run recorded; None for runs at their data's own size (and runs recorded
        # before image size was a choice)
        record = config.get("eval_transform")
        transform = ImageTransform.from_record(record) if record else None
        stream = train_cfg.get("data_path") == "stream" and name == train_cfg.get("data")
        ds = load_dataset(name, split=split, data_dir=data_dir or train_cfg.get("data_dir"), subset=subset,
                          seed=train_cfg.get("seed", 0) or 0, transform=transform, stream=stream,
                          workers=train_cfg.get("data_workers") or 0)
        expected = tuple(config["input_size"])
        if tuple(ds.image_size) != expected:
            raise ValueError(f"{name} images are {tuple(ds.image_size)} but the model was trained on {expected}")
        return model, ds, Precision(recipe_of(config).get("precision", "fp32"), device), weights_file

    @staticmethod
    def evaluate_saved(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None,
                       subset=None, batch_size=1000):
        """Score a classifier run's default (or `weights`) checkpoint on a split of its dataset (or `data`), at
        the precision the run trained with: {loss, top1, n, dataset, split, weights, model, precision}."""
        model, ds, precision, weights_file = ClassificationTask.load_saved(
            run, config, data=data, split=split, weights=weights, device=device, data_dir=data_dir, subset=subset)
        result = evaluate(model, ds, precision.device, config["mean"], config["std"], batch_size=batch_size,
                          precision=precision, flip_tta=bool(recipe_of(config).get("eval_flip")))
        return {**result, "dataset": ds.name, "split": split, "weights": weights_file,
                "model": config["model"], "precision": precision.name}
