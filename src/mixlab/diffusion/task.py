"""The denoising task of the training engine (`mixlab.train.tasks` lists what a task supplies): a UNet learns
DDPM's L_simple.

The engine owns the loop, the run directory, precision, DDP, EMA, the guards and bit-exact resume; this task
supplies what differs from classification:

    loss      Σ over the rank's images of L_simple(x₀) × scale (the engine's `scale` = W / global batch),
              with (t, ε) of global batch position p drawn from a generator keyed by (seed, step) only:
              every rank draws the whole global batch's (t, ε) and keeps its own positions p ≡ rank (mod W),
              the positions the DeviceLoader gave it. So a step's noise is a pure function of (seed, step)
              (resume needs no generator state) and does not depend on the number of ranks: W ranks × B
              images compute the same per-image losses as one process with batch W·B.
    evaluate  the test loss: L_simple on the test split with each image's own fixed (t_i, ε_i)
              (`DDPMProcess.evaluate`), sharded by rank and summed, so it is the same for every world size
    after    a grid of `sample_count` samples from the evaluated (EMA) weights every `sample_every` epochs
    commit    and at the last one, `samples/epoch_NNN.png`, drawn with the run's seed (the same x_T and z
              every time, so successive grids show the same samples improving)

The best epoch is the one with the lowest test loss. The recipe's diffusion block (T, β schedule,
sample_steps) defines the process, and images must be normalised to [−1, 1] (`normalize` [0.5, 0.5]).
"""
import torch

from ..train import distributed
from ..train.image_task import ImageTask
from .ddpm import DDPMProcess, step_generator
from .grid import save_grid

SAMPLES = "samples"


def grid_name(epoch):
    return f"{SAMPLES}/epoch_{epoch:03d}.png"


def is_sample_epoch(epoch, every, last):
    """Whether epoch (1-based) gets a grid: every `every`-th epoch and the run's last."""
    return epoch % every == 0 or epoch == last


class DenoisingTask(ImageTask):
    name = "diffusion"
    best_metric, higher_is_better = "test_loss", False
    metric_fields = ("epoch", "lr", "train_loss", "test_loss", "seconds", "train_pass_seconds")
    watch_collapse = False      # no chance level for a regression loss; the non-finite guards still apply

    def __init__(self):
        self.process = None     # the DDPMProcess, built from the run's recipe in `setup`

    def model_kwargs(self, train_ds):
        c, h, _ = train_ds.image_size
        return {"num_classes": 0, "in_chans": c, "img_size": h}

    def setup(self, run):
        """Build the DDPM process from the recipe and check the run can learn it; returns what config.json
        records about the task."""
        recipe, c = run.recipe, run.train_ds.image_size[0]
        mean, std = DDPMProcess.normalize(c)
        if [float(m) for m in run.mean] != list(mean) or [float(s) for s in run.std] != list(std):
            raise ValueError(f"diffusion needs pixels mapped to [-1, 1]: recipe normalize must be [0.5, 0.5], "
                             f"got mean {run.mean} std {run.std} (the ddpm recipe sets it)")
        self.process = DDPMProcess.from_recipe(recipe)
        return {"diffusion": self.process.config()}

    def loss(self, run, x, y, step, scale):
        d = run.dist
        # The global batch this step belongs to: scale = W / n_g (0 marks a rank's stand-in sample).
        global_n = round(d.world_size / scale) if scale else len(x) * d.world_size
        gen = step_generator(run.config.seed, step, 0, x.device)   # one stream per step, not per rank
        t, noise = self.process.draw(global_n, x.shape[1:], gen, x.device)
        t, noise = t[d.rank::d.world_size][:len(x)], noise[d.rank::d.world_size][:len(x)]
        per_image = self.process.losses(run.net, x, t, noise, run.precision.autocast)
        return per_image.sum() * scale, torch.zeros(1, dtype=torch.float64, device=x.device)

    def train_row(self, totals):
        return {}

    def evaluate(self, run, epoch):
        d = run.dist
        index = torch.arange(d.rank, len(run.test_ds), d.world_size)
        result = self.process.evaluate(run.eval_model, run.test_ds.images, run.config.eval_batch_size, index,
                                       run.precision.autocast)
        totals = torch.tensor([result["test_loss"] * result["n"], result["n"]], dtype=torch.float64,
                              device=run.device)
        distributed.all_reduce_sum(totals, d)
        return {"test_loss": totals[0].item() / max(totals[1].item(), 1.0)}

    def after_commit(self, run, row):
        """The epoch's sample grid (rank 0). Also called on resume for the last committed epoch, whose grid
        a kill may have prevented; an existing grid is complete (written atomically) and kept."""
        epoch, recipe = row["epoch"], run.recipe
        if not is_sample_epoch(epoch, recipe.sample_every, recipe.epochs):
            return
        path = run.dir / grid_name(epoch)
        if path.exists():
            return
        images = self.process.sample(run.eval_model, recipe.sample_count, seed=run.config.seed,
                                     batch_size=run.config.eval_batch_size, autocast=run.precision.autocast)
        save_grid(images, path)
        run.log(f"samples: {path} ({recipe.sample_count} images, {self.process.sample_steps} reverse steps)")

    def summary(self, run, last, best):
        recipe = run.recipe
        gridded = [e for e in range(1, len(run.history["rows"]) + 1)
                   if is_sample_epoch(e, recipe.sample_every, recipe.epochs)]
        return {"test_loss": last.get("test_loss"), "best_test_loss": best,
                "samples": grid_name(gridded[-1]) if gridded else None,
                "diffusion_timesteps": self.process.num_train_timesteps, "sample_steps": self.process.sample_steps}

    def done_line(self, summary):
        grid = f"; samples {summary['samples']}" if summary.get("samples") else ""
        return (f"test loss {summary['test_loss']:.4f} (best {summary['best_test_loss']:.4f} at epoch "
                f"{summary['best_epoch']}){grid}")

    @staticmethod
    def evaluate_saved(run, config, data=None, split="test", weights=None, device="cpu", data_dir=None,
                       subset=None, batch_size=1000):
        """A finished diffusion run's test loss on a split (`mixlab.diffusion.runs.evaluate_denoiser`)."""
        from .runs import evaluate_denoiser
        return evaluate_denoiser(run.path, data=data, split=split, weights=weights, device=device,
                                 data_dir=data_dir, subset=subset, batch_size=batch_size)
