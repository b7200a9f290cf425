"""DDPM around the UNet (mixlab.diffusion): the loss and the reverse chain against their formulas with an
independent schedule, training lowers a fixed test loss, seeded sampling, the Fréchet distance against scipy
and in a mixlab classifier's feature space, and sample grids."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import mixlab
from mixlab.diffusion import (ClassifierFeatures, DDPMProcess, FrechetDistance, frechet_distance, image_grid,
                              save_grid, step_generator, to_model_range, to_uint8)
from mixlab.models.unet import UNet

pytest.importorskip("diffusers")
pytest.importorskip("torchmetrics")


def tiny_unet(**kw):
    torch.manual_seed(0)
    return UNet(in_chans=1, img_size=16, base_chans=16, chan_mult=(1, 2), num_res_blocks=1, norm_groups=4,
                drop_rate=0.0, **kw)


def randomized(model):
    """Non-zero weights everywhere, so an untrained net predicts something other than ε̂ = 0."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def squares(n, size=16, seed=0):
    """uint8 [n, 1, size, size]: one bright 6×6 square a picture at a random place on black."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i, (r, c) in enumerate(torch.randint(0, size - 6, (n, 2), generator=gen).tolist()):
        images[i, :, r:r + 6, c:c + 6] = 255
    return images


def alpha_bar(num_steps, start=1e-4, end=0.02):
    """ᾱ_t = Π_{s≤t}(1 − β_s) with β linear from start to end (DDPM's schedule, computed here, not by diffusers)."""
    betas = torch.tensor([start + (end - start) * i / (num_steps - 1) for i in range(num_steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


class Recorder(nn.Module):
    """A denoiser ε̂(x, t) = 0.5·x that keeps its inputs."""

    in_chans, img_size = 1, 16

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))     # gives the task a device to read
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return 0.5 * x + 0 * self.anchor


def test_loss_is_l_simple_on_the_ddpm_forward_process():
    task = DDPMProcess(num_train_timesteps=50)
    model = Recorder()
    x0 = to_model_range(squares(6))
    loss = task.loss(model, x0, step_generator(3, 7))
    gen = step_generator(3, 7)                          # the same draws, in the documented order: t, then ε
    t = torch.randint(0, 50, (6,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    a = alpha_bar(50)[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    (seen_x, seen_t), = model.calls
    assert torch.equal(seen_t, t)
    torch.testing.assert_close(seen_x, x_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, (0.5 * seen_x - eps).square().mean())


def test_training_a_few_steps_lowers_the_test_loss():
    task = DDPMProcess(num_train_timesteps=100)
    model = tiny_unet(dia=True)
    images = squares(64)
    x0 = to_model_range(images)
    before = task.evaluate(model, images[:32])["test_loss"]
    assert before == pytest.approx(1.0, abs=0.1)        # zero-initialised output: ε̂ = 0, loss = E ε² ≈ 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        batch = x0[(16 * step) % 64:(16 * step) % 64 + 16]
        loss = task.loss(model, batch, step_generator(0, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = task.evaluate(model, images[:32])["test_loss"]
    assert after < 0.5 * before, (before, after)
    # A step's loss is a pure function of (seed, step) and the weights.
    assert torch.equal(task.loss(model, x0[:8], step_generator(0, 5)), task.loss(model, x0[:8], step_generator(0, 5)))


def test_test_loss_is_fixed_per_image_whatever_the_batching():
    task = DDPMProcess(num_train_timesteps=100, eval_seed=4)
    model = randomized(tiny_unet())
    images = squares(20)
    full = task.evaluate(model, images, batch_size=64)
    assert full["n"] == 20 and full["test_loss"] > 0
    assert task.evaluate(model, images, batch_size=64) == full
    assert task.evaluate(model, images, batch_size=3)["test_loss"] == pytest.approx(full["test_loss"], rel=1e-6)
    shards = [task.evaluate(model, images, batch_size=4, index=torch.arange(r, 20, 3)) for r in range(3)]
    assert sum(s["n"] for s in shards) == 20
    combined = sum(s["test_loss"] * s["n"] for s in shards) / 20
    assert combined == pytest.approx(full["test_loss"], rel=1e-6)
    assert DDPMProcess(num_train_timesteps=100, eval_seed=5).evaluate(model, images)["test_loss"] != full["test_loss"]


def test_sampling_is_deterministic_for_a_seed():
    task = DDPMProcess(num_train_timesteps=20, sample_steps=5)
    model = randomized(tiny_unet()).train()
    first = task.sample(model, 6, seed=3, batch_size=4)
    assert first.shape == (6, 1, 16, 16) and first.dtype == torch.uint8
    assert model.training                                   # the caller's mode comes back
    assert torch.equal(first, task.sample(model, 6, seed=3, batch_size=4))
    assert not torch.equal(first, task.sample(model, 6, seed=4, batch_size=4))
    assert torch.equal(first[:4], task.sample(model, 4, seed=3, batch_size=4))   # batch b is keyed by (seed, b)


@pytest.mark.parametrize("steps", [8, 4])
def test_reverse_chain_is_the_ddpm_posterior(steps):
    """Each step: x̂₀ = clip((x − √(1−ᾱ_t) ε̂)/√ᾱ_t), x ← √ᾱ_p β/(1−ᾱ_t) x̂₀ + √(1−β)(1−ᾱ_p)/(1−ᾱ_t) x + σ z,
    σ² = (1−ᾱ_p)/(1−ᾱ_t) β, β = 1 − ᾱ_t/ᾱ_p, p the previous kept step (t − T/steps), no z at the end."""
    T = 8
    task = DDPMProcess(num_train_timesteps=T)
    model = Recorder()
    x_T = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2
    out = task.reverse(model, x_T.clone(), torch.Generator().manual_seed(9), steps=steps)
    ab = alpha_bar(T)
    gen = torch.Generator().manual_seed(9)
    x = x_T.double()
    for t in range(T - T // steps, -1, -T // steps):
        prev = t - T // steps
        a_t, a_p = ab[t], ab[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - a_t / a_p
        eps = 0.5 * x
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        x = a_p.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_p) / (1 - a_t) * x
        if t > 0:
            x = x + ((1 - a_p) / (1 - a_t) * beta).sqrt() * torch.randn(x.shape, generator=gen).double()
    assert [int(t[0]) for _, t in model.calls] == list(range(T - T // steps, -1, -T // steps))
    torch.testing.assert_close(out.double(), x, rtol=1e-4, atol=1e-5)


def test_value_ranges_config_and_bad_arguments():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(pixels)
    assert x.min() == -1 and x.max() == 1 and torch.equal(to_uint8(x), pixels)
    task = DDPMProcess()
    cfg = task.config()
    assert (cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"], cfg["beta_schedule"]) == \
        (1000, 1e-4, 0.02, "linear")
    assert cfg["prediction_type"] == "epsilon" and cfg["variance_type"] == "fixed_small" and cfg["clip_sample"]
    assert cfg["sample_steps"] == 1000 and cfg["diffusers"]
    assert task.normalize(3) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    g1, g2 = step_generator(0, 3, rank=1), step_generator(0, 3, rank=1)
    assert torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    other_rank = torch.randn(4, generator=step_generator(0, 3, rank=0))
    assert not torch.equal(other_rank, torch.randn(4, generator=step_generator(0, 3, rank=1)))
    for make, message in [(lambda: DDPMProcess(num_train_timesteps=1), "num_train_timesteps"),
                          (lambda: DDPMProcess(beta_schedule="cosine"), "beta_schedule"),
                          (lambda: DDPMProcess(num_train_timesteps=10, sample_steps=11), "sample_steps"),
                          (lambda: to_model_range(x), "uint8"),
                          (lambda: task.sample(Recorder(), 0), "positive")]:
        with pytest.raises(ValueError, match=message):
            make()


class PooledPixels(nn.Module):
    """A small fixed feature space: 4×4 average-pooled pixels, 16-d for a 16 px grey image."""

    feature_space, num_features = "pooled pixels, 16-d", 16

    def forward(self, images):
        return F.avg_pool2d(images.double() / 255, 4).flatten(1)


def add_noise(images, sigma, seed=0):
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * sigma
    return (images.double() + noise).round().clamp(0, 255).to(torch.uint8)


def test_frechet_distance_equals_the_formula_with_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    real, fake = squares(300), add_noise(squares(300, seed=1), 30)
    result = frechet_distance(real, fake, PooledPixels(), batch_size=64)
    assert result["feature_space"] == "pooled pixels, 16-d" and (result["n_real"], result["n_fake"]) == (300, 300)
    fr, fg = (PooledPixels()(s).numpy() for s in (real, fake))
    mu_r, mu_g = fr.mean(0), fg.mean(0)
    cov_r, cov_g = np.cov(fr, rowvar=False), np.cov(fg, rowvar=False)
    expected = ((mu_r - mu_g) ** 2).sum() + np.trace(cov_r + cov_g - 2 * linalg.sqrtm(cov_r @ cov_g).real)
    assert result["fid"] == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_zero_on_itself_and_grows_with_noise():
    real = squares(300)
    fd = FrechetDistance(PooledPixels(), batch_size=128)
    fd.add_real(real)
    assert abs(fd.score(real)["fid"]) < 1e-9
    scores = [fd.score(add_noise(real, sigma))["fid"] for sigma in (4, 16, 48, 96)]
    assert 0 < scores[0] and all(a < b for a, b in zip(scores, scores[1:])), scores
    assert fd.n_real == 300                                 # scoring never touches the real statistics


def test_fid_in_a_mixlab_classifier_feature_space_end_to_end(tmp_path):
    torch.manual_seed(0)
    classifier = mixlab.create_model("dia_resnet164", depth=11, num_classes=10, in_chans=1, img_size=16)
    mixlab.save(classifier, tmp_path, weights_name="best.safetensors", mean=[0.29], std=[0.35],
                dataset="fashion-mnist")
    features = ClassifierFeatures.from_run(tmp_path)
    assert features.feature_space == "mixlab:dia_resnet164 trained on fashion-mnist, 256-d pre-logits"
    fd = FrechetDistance(features, batch_size=8)
    fd.metric.train()
    assert not features.model.training                     # the extractor stays in eval mode
    real = squares(12)
    fd.add_real(real)
    same, other = fd.score(real), fd.score(add_noise(squares(12, seed=2), 40))
    assert abs(same["fid"]) < 1e-6 and other["fid"] > 1e-4
    assert other["feature_space"] == features.feature_space and other["n_fake"] == 12
    # the features are the classifier's pre-logits on normalised pixels
    x = (real[:2].float() / 255 - 0.29) / 0.35
    expected = classifier.eval().forward_head(classifier.forward_features(x), pre_logits=True)
    torch.testing.assert_close(features(real[:2]).float(), expected)


def test_frechet_distance_bad_input():
    fd = FrechetDistance(PooledPixels())
    with pytest.raises(ValueError, match="add at least 2 real images"):
        fd.score(squares(4))
    with pytest.raises(ValueError, match="uint8"):
        fd.add_real(squares(4).float())
    with pytest.raises(ValueError, match="'inception' or an nn.Module"):
        FrechetDistance("clip")
    with pytest.raises(ValueError, match="needs an int `num_features`"):
        FrechetDistance(nn.Flatten())


def test_inception_fid_says_what_it_needs():
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torch-fidelity.*ClassifierFeatures"):
            FrechetDistance("inception")
    else:
        pytest.skip("torch-fidelity is installed; the Inception weights need a network (not in tests)")


def test_grid_places_every_image_and_saves_png(tmp_path):
    images = (torch.arange(5, dtype=torch.uint8) * 40 + 10).view(5, 1, 1, 1).expand(5, 1, 4, 4).contiguous()
    grid = image_grid(images, nrow=3, padding=2)
    assert grid.shape == (2 + 2 * 6, 2 + 3 * 6) and grid.dtype == torch.uint8
    filled = torch.zeros_like(grid, dtype=torch.bool)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = (slice(2 + 6 * r, 6 + 6 * r), slice(2 + 6 * c, 6 + 6 * c))
        assert torch.equal(grid[tile], images[i, 0])
        filled[tile] = True
    assert (grid[~filled] == 0).all()                      # padding and the empty sixth slot are black
    path = save_grid(images, tmp_path / "samples" / "epoch_001.png", nrow=3)
    assert np.array_equal(np.asarray(Image.open(path)), grid.numpy())
    rgb = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert image_grid(rgb).shape == (2 + 1 * 6, 2 + 2 * 6, 3)
    with pytest.raises(ValueError, match="uint8"):
        image_grid(images.float())
