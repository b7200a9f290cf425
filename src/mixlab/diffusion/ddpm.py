"""DDPM (Ho et al. 2020, arXiv 2006.11239) as a task that a training loop drives: the ε-prediction loss of a
batch, a deterministic test loss, and seeded ancestral sampling. No file I/O here.

diffusers' `DDPMScheduler` supplies what it already does well: the β schedule, q(x_t | x₀) (`add_noise`) and
the reverse step (`step`). The denoiser is any `model(x_t, t) -> ε̂` (mixlab's UNet).

    β_t linear from 1e-4 to 0.02 over T = 1000 steps,  ᾱ_t = Π_{s≤t} (1 − β_s)
    x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε,   ε ~ N(0, I),   t ~ U{0, …, T−1}
    loss = mean over pixels of (ε̂(x_t, t) − ε)²                                  (DDPM's L_simple)
    x_{t−1} = μ̃_t(x_t, x̂₀) + σ_t z,  x̂₀ = clip((x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, −1, 1),  σ_t² = β̃_t (fixed_small)

Images enter as x₀ ∈ [−1, 1], x₀ = 2u/255 − 1 for uint8 u: mean 0.5 and std 0.5 per channel in the
DeviceLoader's `normalize` terms (`DDPMProcess.normalize(in_chans)`).
"""
import contextlib
import hashlib

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")   # also the Recipe's beta_schedule choices


def derived_seed(*parts):
    """A 63-bit seed that depends only on `parts` (sha256), for generators keyed by (seed, step, …)."""
    digest = hashlib.sha256(":".join(["mixlab.diffusion", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def step_generator(seed, step, rank=0, device="cpu"):
    """The generator for training step `step` on rank `rank`: a pure function of (seed, step, rank), so a
    resumed run draws the same timesteps and noise without saving any generator state."""
    return torch.Generator(device=device).manual_seed(derived_seed("train", seed, step, rank))


def to_model_range(images, device=None):
    """uint8 [B, C, H, W] → float32 x₀ = 2u/255 − 1 ∈ [−1, 1] on `device`."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}; convert with to_uint8 or pass raw pixels")
    return images.to(device).float().div_(127.5).sub_(1.0)


def to_uint8(x):
    """float x ∈ [−1, 1] → uint8 round((x + 1)·127.5), clamped to [0, 255]."""
    return ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def _device_of(model):
    return next(model.parameters()).device


class DDPMProcess:
    """The DDPM process around a denoiser `model(x_t, t) -> ε̂` (see the module docstring).

    num_train_timesteps T, beta_schedule / beta_start / beta_end: diffusers' schedule options; clip_sample:
    clip x̂₀ to [−1, 1] in the reverse step; sample_steps: reverse steps when sampling (default T; fewer take
    diffusers' evenly spaced 'leading' subset of the T steps); eval_seed: keys the fixed (t, ε) of the test loss.
    """

    def __init__(self, num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                 clip_sample=True, sample_steps=None, eval_seed=0):
        from diffusers import DDPMScheduler

        if not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
        sample_steps = num_train_timesteps if sample_steps is None else sample_steps
        if not isinstance(sample_steps, int) or not 1 <= sample_steps <= num_train_timesteps:
            raise ValueError(f"sample_steps must be an integer in [1, {num_train_timesteps}], got {sample_steps!r}")
        self.num_train_timesteps, self.sample_steps, self.eval_seed = num_train_timesteps, sample_steps, eval_seed
        self._options = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                             beta_start=beta_start, beta_end=beta_end, prediction_type="epsilon",
                             variance_type="fixed_small", clip_sample=clip_sample, clip_sample_range=1.0)
        self.scheduler = DDPMScheduler(**self._options)

    @classmethod
    def from_recipe(cls, recipe, eval_seed=0):
        """The process a `Recipe` describes (its diffusion block: T, β schedule, sample_steps)."""
        return cls(num_train_timesteps=recipe.diffusion_timesteps, beta_schedule=recipe.beta_schedule,
                   beta_start=recipe.beta_start, beta_end=recipe.beta_end, sample_steps=recipe.sample_steps,
                   eval_seed=eval_seed)

    def config(self):
        """Everything that defines the process, for a run's config.json."""
        import diffusers
        keys = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type",
                "variance_type", "clip_sample", "clip_sample_range", "timestep_spacing")
        return {"process": "ddpm", "scheduler": "diffusers.DDPMScheduler", "diffusers": diffusers.__version__,
                **{k: self.scheduler.config[k] for k in keys}, "sample_steps": self.sample_steps,
                "eval_seed": self.eval_seed, "data_range": [-1.0, 1.0]}

    @staticmethod
    def normalize(in_chans):
        """(mean, std) per channel that map uint8 pixels to [−1, 1], for the DeviceLoader's `normalize`."""
        return (0.5,) * in_chans, (0.5,) * in_chans

    def draw(self, n, shape, generator=None, device="cpu"):
        """(t [n], ε [n, *shape]) for n training images, drawn from `generator` (on any device; None uses
        torch's global RNG) in that order, t ~ U{0 … T−1} and ε ~ N(0, I); returned on `device`."""
        draw_on = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device=draw_on)
        noise = torch.randn((n, *shape), generator=generator, device=draw_on)
        return t.to(device), noise.to(device)

    def losses(self, model, x, t, noise, autocast=contextlib.nullcontext):
        """Per-image L_simple [B] (float32) of x₀ [B, C, H, W] ∈ [−1, 1] noised with the given (t, ε);
        the model runs under `autocast()` (a context-manager factory, e.g. a run's precision)."""
        x_t = self.scheduler.add_noise(x.float(), noise, t)
        with autocast():
            eps = model(x_t, t)
        return (eps.float() - noise).square().mean(dim=tuple(range(1, x.ndim)))

    def loss(self, model, x, generator=None):
        """L_simple of a batch x₀ ∈ [−1, 1], float [B, C, H, W]: t and ε are drawn from `generator` (on any
        device; None uses torch's global RNG), in that order. Returns a float32 scalar."""
        t, noise = self.draw(x.shape[0], x.shape[1:], generator, x.device)
        return self.losses(model, x, t, noise).mean()

    def _fixed_noise(self, positions, shape):
        """(t [n], ε [n, C, H, W]) for test images at global `positions`: image i always gets the same pair."""
        gen = torch.Generator()
        ts, noises = [], []
        for i in positions.tolist():
            gen.manual_seed(derived_seed("eval", self.eval_seed, i))
            ts.append(torch.randint(0, self.num_train_timesteps, (1,), generator=gen))
            noises.append(torch.randn((1, *shape), generator=gen))
        return torch.cat(ts), torch.cat(noises)

    @torch.no_grad()
    def evaluate(self, model, images, batch_size=256, index=None, autocast=contextlib.nullcontext):
        """{'test_loss', 'n'}: L_simple of `model` on uint8 `images` [N, C, H, W], image i noised with its own
        fixed (t_i, ε_i), seeded by (eval_seed, i). The number does not depend on batch size, device or the
        split into shards: a DDP rank passes `index` (its global positions, e.g. arange(rank, N, world)) and
        the ranks combine test_loss·n. The model runs under `autocast()` (a run's precision)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        device = _device_of(model)
        index = torch.arange(len(images)) if index is None else torch.as_tensor(index).cpu()
        was_training = model.training
        model.eval()
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, len(index), batch_size):
            positions = index[start:start + batch_size]
            x = to_model_range(images[positions.to(images.device)], device)
            t, noise = self._fixed_noise(positions, x.shape[1:])
            t, noise = t.to(device), noise.to(device)
            total += self.losses(model, x, t, noise, autocast).sum().double().cpu()
        model.train(was_training)
        n = len(index)
        return {"test_loss": total.item() / max(n, 1), "n": n}

    def _sampler(self, steps):
        from diffusers import DDPMScheduler

        steps = self.sample_steps if steps is None else steps
        if not isinstance(steps, int) or not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be an integer in [1, {self.num_train_timesteps}], got {steps!r}")
        # A fresh scheduler: set_timesteps mutates it. (from_config would import every compatible scheduler.)
        sampler = DDPMScheduler(**self._options)
        sampler.set_timesteps(steps)
        return sampler

    @torch.no_grad()
    def reverse(self, model, x, generator=None, steps=None, autocast=contextlib.nullcontext):
        """Run the reverse chain from x_T = `x` (float [B, C, H, W] on the model's device) down to x₀ ∈ [−1, 1],
        drawing every step's z from `generator`; `steps` reverse steps (default `sample_steps`). The model runs
        under `autocast()`; the chain itself (x̂₀, posterior mean, z) is float32."""
        sampler = self._sampler(steps)
        was_training = model.training
        model.eval()
        for t in sampler.timesteps.tolist():
            with autocast():
                eps = model(x, torch.full((len(x),), t, device=x.device)).float()
            x = sampler.step(eps, t, x, generator=generator).prev_sample
        model.train(was_training)
        return x

    @torch.no_grad()
    def sample(self, model, n, seed=0, steps=None, batch_size=256, autocast=contextlib.nullcontext):
        """n images drawn by ancestral DDPM sampling at the model's (in_chans, img_size), as uint8
        [n, C, H, W]. Batch b (images b·batch_size …) uses a generator on the model's device seeded by
        (seed, b) for x_T and then every step's z, so (seed, batch_size, device type) fix the images."""
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
        device = _device_of(model)
        shape = (model.in_chans, model.img_size, model.img_size)
        out = []
        for b, start in enumerate(range(0, n, batch_size)):
            gen = torch.Generator(device=device).manual_seed(derived_seed("sample", seed, b))
            x = torch.randn((min(batch_size, n - start), *shape), generator=gen, device=device)
            out.append(to_uint8(self.reverse(model, x, gen, steps, autocast)).cpu())
        return torch.cat(out)
