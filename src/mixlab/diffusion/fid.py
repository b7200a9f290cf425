"""Fréchet distance between real and generated images in a named feature space, through torchmetrics.

    FD = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})                      (Heusel et al. 2017, arXiv 1706.08500)

μ, Σ: mean and covariance of the features of each set. Which features decide what the number means:

- "inception": FID proper, Inception-v3 pool3 (2048-d) with the FID weights that torch-fidelity downloads
  on first use. Needs `torch-fidelity` and a network once; comparable with published FIDs.
- a `ClassifierFeatures` module: the pre-logit features of a mixlab classifier trained on the same data
  (offline and in tests). Same formula, other feature space: comparable only with numbers from the same
  classifier, never with Inception FIDs.

Every result carries its `feature_space`. Images go in as uint8 [N, C, H, W] (generated ones quantised like
saved PNGs). torchmetrics sums the feature statistics across DDP ranks when a process group is up.
"""
import os
from pathlib import Path

import torch
from torch import nn

INCEPTION_SPACE = "inception-v3 pool3 (2048-d, torch-fidelity FID weights)"
# torch-fidelity's FID Inception weights: the file its first use downloads into torch's hub cache.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_HOST = "github.com"


def inception_status(online=None):
    """Whether Inception FID can run here, without downloading anything: (usable, weights path or None, why).

    Usable when torch-fidelity is installed and either the weights are local (`$MIXLAB_INCEPTION_WEIGHTS`, or
    torch's hub cache) or the machine is online (torch-fidelity then downloads them on first use; weights path
    None). `online()` answers the last question (default: github.com answers and MIXLAB_OFFLINE is unset).
    """
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False, None, "torch-fidelity is not installed (pip install 'mixlab[diffusion]')"
    given = os.environ.get("MIXLAB_INCEPTION_WEIGHTS")
    if given:
        if not Path(given).is_file():
            return False, None, f"MIXLAB_INCEPTION_WEIGHTS={given} is not a file"
        return True, given, f"Inception weights from {given}"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return True, str(cached), f"Inception weights from {cached}"
    if online is None:
        from ..data.acquire import online as answers
        online = lambda: answers(INCEPTION_WEIGHTS_HOST)   # noqa: E731
    if online():
        return True, None, f"torch-fidelity downloads the Inception weights into {cached.parent}"
    return False, None, (f"the Inception weights are not in {cached.parent} (or $MIXLAB_INCEPTION_WEIGHTS) and "
                         f"{INCEPTION_WEIGHTS_HOST} cannot be reached")


class ClassifierFeatures(nn.Module):
    """uint8 images → the pre-logit features of a mixlab classifier, normalised as it was trained.

    forward(u) = model.forward_head(model.forward_features((u/255 − mean)/std), pre_logits=True), float64.
    `feature_space` names the model, its training data and the feature width.
    """

    def __init__(self, model, mean, std, trained_on):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.num_features = model.num_features
        name = getattr(model, "model_name", type(model).__name__)
        self.feature_space = f"mixlab:{name} trained on {trained_on}, {self.num_features}-d pre-logits"

    @classmethod
    def from_run(cls, run_dir, weights=None, map_location="cpu"):
        """The classifier of a mixlab run directory (its default weights, `rundir.default_weights`, unless `weights` names another)."""
        from ..checkpoint import load
        model = load(run_dir, weights=weights, map_location=map_location)
        cfg = model.data_config
        if cfg.get("mean") is None or cfg.get("std") is None:
            raise ValueError(f"{run_dir} has no mean/std in config.json; it is not a trained classifier's run")
        return cls(model, cfg["mean"], cfg["std"], cfg.get("dataset") or "unknown data")

    def train(self, mode=True):
        # torchmetrics may toggle train(); the extractor stays in eval mode (dropout off, BN statistics fixed).
        return super().train(False)

    def forward(self, images):
        x = (images.float() / 255.0 - self.mean) / self.std
        feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return feats.double()


class _RepeatToRGB(nn.Module):
    """Grey images [N, 1, H, W] → [N, 3, H, W] for Inception, which takes RGB only."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception
        self.num_features = 2048

    def forward(self, images):
        return self.inception(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images)


class FrechetDistance:
    """FD between one real set and any number of generated sets in one feature space.

        fd = FrechetDistance(ClassifierFeatures.from_run("runs/clf"))   # or FrechetDistance("inception")
        fd.add_real(test_images_uint8)                                   # once
        fd.score(samples_uint8)  # {'fid', 'feature_space', 'n_real', 'n_fake'}; real statistics are kept

    features: "inception" or an nn.Module mapping uint8 images to [N, D], with `num_features` = D and a
    `feature_space` string naming it; inception_weights: a local copy of torch-fidelity's
    weights-inception-2015-12-05-6726825d.pth, for machines without a network.

    Under DDP with `sync=True` (torchmetrics' sync_on_compute) every rank adds its own shard of the real and
    generated images and calls `score`, and the statistics are summed over ranks; with `sync=False` each
    process scores alone (e.g. rank 0 only, which would otherwise wait for the other ranks forever).
    """

    def __init__(self, features="inception", device="cpu", batch_size=250, inception_weights=None, sync=True):
        from torchmetrics.image.fid import FrechetInceptionDistance

        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        if isinstance(features, str):
            if features != "inception":
                raise ValueError(f"features must be 'inception' or an nn.Module, got {features!r}")
            try:
                metric = FrechetInceptionDistance(feature=2048, reset_real_features=False, normalize=False,
                                                  feature_extractor_weights_path=inception_weights,
                                                  sync_on_compute=sync)
            except ModuleNotFoundError as err:
                raise ImportError("Inception FID needs torch-fidelity (pip install torch-fidelity); offline, use "
                                  "FrechetDistance(ClassifierFeatures.from_run(RUN))") from err
            except OSError as err:
                raise OSError(f"could not fetch the Inception FID weights ({err}); pass inception_weights=PATH to "
                              f"a local {INCEPTION_WEIGHTS_FILE}, or use a ClassifierFeatures space") from err
            metric.inception = _RepeatToRGB(metric.inception)
            self.feature_space = INCEPTION_SPACE
        elif isinstance(features, nn.Module):
            # Without it torchmetrics would probe the module with a 3×299×299 image to learn the width.
            if not isinstance(getattr(features, "num_features", None), int):
                raise ValueError(f"the feature module {type(features).__name__} needs an int `num_features` "
                                 f"attribute (its output width)")
            metric = FrechetInceptionDistance(feature=features, reset_real_features=False, sync_on_compute=sync)
            self.feature_space = getattr(features, "feature_space", None) or \
                f"custom {type(features).__name__}, {metric.real_features_sum.numel()}-d"
        else:
            raise ValueError(f"features must be 'inception' or an nn.Module, got {type(features).__name__}")
        self.metric = metric.to(device)
        self.device = device

    def _update(self, images, real):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                self.metric.update(images[start:start + self.batch_size].to(self.device), real=real)

    def add_real(self, images):
        """Accumulate real images (uint8); call once, or several times with parts of the set."""
        self._update(images, real=True)

    @property
    def n_real(self):
        return int(self.metric.real_features_num_samples)

    def score(self, images):
        """FD of the generated uint8 `images` against the real set added so far."""
        if self.n_real < 2:
            raise ValueError(f"add at least 2 real images first (have {self.n_real})")
        if len(images) < 2:
            raise ValueError(f"need at least 2 generated images, got {len(images)}")
        self.metric.reset()                    # forgets generated statistics only (reset_real_features=False)
        self._update(images, real=False)
        return {"fid": float(self.metric.compute()), "feature_space": self.feature_space,
                "n_real": self.n_real, "n_fake": int(self.metric.fake_features_num_samples)}


def frechet_distance(real, fake, features="inception", device="cpu", batch_size=250, sync=True):
    """One-shot FD of uint8 image sets `fake` against `real`: {'fid', 'feature_space', 'n_real', 'n_fake'}."""
    fd = FrechetDistance(features, device=device, batch_size=batch_size, sync=sync)
    fd.add_real(real)
    return fd.score(fake)
