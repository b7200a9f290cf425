"""Batches of a `DenseDataset` at a fixed size S×S, planned like the classification loaders (data.loader).

Epoch plan: the order of the N samples is a permutation drawn from `epoch_generator(seed, epoch)` (training)
or 0..N−1 (evaluation); the sample at position p of the order is transformed with `joint_transform(S, train)`
whose random draws come from seed `sample_seed_base(seed, epoch) + p` alone (`transforms.apply`). So a batch is
a pure function of (seed, epoch, position): resume after a kill is bit-exact, and the world size changes
nothing. DDP: global batch g is positions [g·B·W, (g+1)·B·W), rank r takes its strided slice r::W.

A batch is (x, y): x float32 [b, 3, S, S] normalised (x/255 − mean)/std; y a mask tensor int64 [b, S, S]
(segmentation) or a list of b dicts {boxes float32 [n, 4] XYXY pixels, labels int64 [n]} (detection; n may
be 0 and differs per image). Evaluation samples are resized once and kept.
"""
import math

import torch
from torchvision.transforms import v2

from ..data.loader import epoch_generator, sample_seed_base
from .transforms import apply, joint_transform


class DenseLoader:
    """(x, y) batches of a dense dataset (module docstring); `iter_weighted` adds the DDP loss scale."""

    def __init__(self, ds, batch_size, size, train=True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), seed=0,
                 rank=0, world_size=1, drop_last=None, flip=True, scale_min=0.5):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size, self.size, self.train = ds, batch_size, int(size), train
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self.drop_last = train if drop_last is None else bool(drop_last)
        self.global_batch = batch_size * world_size
        n = len(ds)
        self.num_batches = n // self.global_batch if self.drop_last else math.ceil(n / self.global_batch)
        if self.num_batches == 0:
            raise ValueError(f"{ds.name} {ds.split} has {n} images, fewer than one global batch of "
                             f"{self.global_batch} (batch_size {batch_size} x world_size {world_size})")
        steps = list(joint_transform(self.size, train, scale_min).transforms)
        if train and not flip:
            steps = steps[:1]
        self.transform = v2.Compose(steps)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._fixed = None if train else [apply(self.transform, *ds[i]) for i in range(n)]

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_batches

    def order(self):
        n = len(self.dataset)
        return torch.randperm(n, generator=epoch_generator(self.seed, self.epoch)) if self.train else torch.arange(n)

    def sample(self, index, position):
        """Sample `index` at epoch position `position`: (uint8 image [3, S, S], mask or box dict)."""
        if self._fixed is not None:
            return self._fixed[index]
        return apply(self.transform, *self.dataset[index], seed=sample_seed_base(self.seed, self.epoch) + position)

    def collate(self, samples):
        x = torch.stack([im for im, _ in samples]).float().div_(255).sub_(self.mean).div_(self.std)
        targets = [t for _, t in samples]
        if isinstance(targets[0], dict):
            return x, targets
        return x, torch.stack(targets)

    def batch(self, g, order):
        """This rank's part of global batch g (possibly empty on the last batch)."""
        n = len(self.dataset)
        stop = min((g + 1) * self.global_batch, n)
        positions = range(g * self.global_batch + self.rank, stop, self.world_size)
        return [self.sample(int(order[p]), p) for p in positions]

    def __iter__(self):
        order = self.order()
        for g in range(self.num_batches):
            samples = self.batch(g, order)
            if samples:
                yield self.collate(samples)

    def iter_weighted(self, start_batch=0):
        """(x, y, loss_scale) per batch: loss_scale = W / n_g (n_g = size of global batch g), so DDP's average
        of Σ_rank ℓ · W / n_g is the mean over the global batch; a rank with an empty slice of the last batch
        gets one stand-in sample with scale 0 (every rank must run forward and backward)."""
        order = self.order()
        n = len(self.dataset)
        for g in range(start_batch, self.num_batches):
            samples = self.batch(g, order)
            size = min(self.global_batch, n - g * self.global_batch)
            if samples:
                yield (*self.collate(samples), self.world_size / size)
            else:
                yield (*self.collate([self.sample(int(order[g * self.global_batch]), g * self.global_batch)]), 0.0)
