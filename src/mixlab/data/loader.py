"""Device-resident batches: the uint8 dataset lives on the training device; crop, flip and normalise run
there, batched and per sample (the airbench recipe), with no DataLoader workers and no per-image Python loop.
`PlannedLoader` holds what this loader shares with the streaming one (stream.py): the epoch plan, the DDP
slices, normalisation and `iter_weighted`.

Epoch plan: a CPU `torch.Generator` seeded from (seed, epoch) draws, in this order, the permutation of the
N samples (if shuffling), a crop offset (dy, dx) ∈ [0, 2p]² (if cropping with padding p) and a flip bit (if
flipping) for each *position* of the epoch order. So batches are a pure function of (seed, epoch), the same
on every device and for every world size. A random-resized crop (transforms.py) draws its box from a
generator seeded by `sample_seed_base(seed, epoch) + position`, apart from the epoch generator; on the device
it is cut from the stored crop source and resized by `resized_crop_batch`.

Random crop = torchvision RandomCrop(size, padding=p) with zero fill: out[c, i, j] = pad(x)[c, dy + i, dx + j];
horizontal flip reverses j. Both are one gather with per-sample index tensors.

DDP: `batch_size` is per rank. Global batch g is positions [g·B·W, (g+1)·B·W) of the epoch order, augmented
with the epoch plan, and rank r takes its strided slice r::W. So W ranks × B see exactly the samples (and
augmentations) of one process with batch W·B; every rank has the same len(loader). Without drop_last the
last global batch may be short, so a rank's last batch may be smaller (even empty in eval with many ranks).
"""
import hashlib
import math

import torch
import torch.nn.functional as F

from .transforms import resized_crop_batch, rrc_box, sample_generator


def epoch_generator(seed, epoch):
    """A CPU generator whose state depends only on (seed, epoch)."""
    digest = hashlib.sha256(f"mixlab.data:{int(seed)}:{int(epoch)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def crop_flip(images, offsets=None, flips=None, padding=0):
    """Per-sample random crop (zero padding `padding`, top-left offsets [B, 2] in [0, 2·padding]) and
    horizontal flip (bool [B]) of images [B, C, H, W] (any dtype), as one `gather` over the flattened
    padded images (the fastest of gather / advanced indexing / per-shift translation on CPU)."""
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4) if padding else images
    padded_w = w + 2 * padding
    if offsets is None:
        offsets = torch.zeros(b, 2, dtype=torch.long, device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if flips is not None:
        cols = torch.where(flips[:, None], w - 1 - cols, cols)
    rows = offsets[:, :1] + torch.arange(h, device=device)
    cols = offsets[:, 1:] + cols
    flat_index = (rows[:, :, None] * padded_w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, (h + 2 * padding) * padded_w).gather(2, flat_index).view(b, c, h, w)


def sample_seed_base(seed, epoch):
    """The first per-sample seed of an epoch; sample at position p of the epoch order uses base + p. Drawn
    apart from the epoch generator, so adding per-sample randomness leaves the other draws unchanged."""
    digest = hashlib.sha256(f"mixlab.data.sample:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


class PlannedLoader:
    """What the device-resident and the streaming loader share: the epoch plan (module docstring), the
    global batch's strided DDP slices, normalisation, and `iter_weighted`. A subclass supplies `iter_from`
    and `_single`.

    transform: the run's `ImageTransform`; with `random_resized_crop` a training loader draws a crop box per
    sample (from a generator seeded by `sample_seed_base` + position) instead of the padded crop.
    """

    def __init__(self, ds, batch_size, train=True, shuffle=None, drop_last=None, crop_padding=4, flip=True,
                 normalize=None, seed=0, rank=0, world_size=1, transform=None, augment=None):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.dataset, self.batch_size, self.rank, self.world_size = ds, batch_size, rank, world_size
        self.train, self.seed, self.epoch = train, seed, 0
        self.shuffle = train if shuffle is None else bool(shuffle)
        self.drop_last = train if drop_last is None else bool(drop_last)
        self.rrc = bool(train and transform is not None and transform.rrc)
        self.transform = transform
        self.padding = int(crop_padding or 0) if train and not self.rrc else 0
        self.flip = bool(flip) and train
        if self.padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.global_batch = batch_size * world_size
        n = len(ds)
        self.num_batches = n // self.global_batch if self.drop_last else math.ceil(n / self.global_batch)
        if self.num_batches == 0:
            raise ValueError(f"{ds.name} {ds.split} has {n} images, fewer than one global batch of "
                             f"{self.global_batch} (batch_size {batch_size} x world_size {world_size}) with drop_last")
        channels = ds.image_size[0]
        if normalize is False:
            mean, std = (0.0,) * channels, (1.0,) * channels
        else:
            mean, std = (ds.mean, ds.std) if normalize is None else normalize
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"normalize needs {channels} means and positive stds, got {mean} / {std}")
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t
        # strong augmentation (augment.py), training only; geometric ops fill with the mean colour, as timm
        self.augment = augment if train else None
        self.fill = [min(255, round(255 * m)) for m in mean]

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_batches

    @property
    def num_samples(self):
        """Samples this rank sees in one epoch."""
        n = min(self.num_batches * self.global_batch, len(self.dataset))
        return len(range(self.rank, n, self.world_size))

    def epoch_plan(self):
        """(order [N], offsets [N, 2] or None, flips [N] or None) on the CPU for the current (seed, epoch)."""
        n = len(self.dataset)
        gen = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=gen) if self.padding else None
        flips = torch.rand(n, generator=gen) < 0.5 if self.flip else None
        return order, offsets, flips

    def augment_plan(self):
        """The strong augmentation's draws for the current (seed, epoch) (`Augmentation.plan`), or None."""
        if self.augment is None:
            return None
        _, h, w = self.output_size
        return self.augment.plan(self.seed, self.epoch, len(self.dataset), self.num_batches, h, w)

    @property
    def output_size(self):
        """(C, H, W) of a training batch's images."""
        c, h, w = self.dataset.image_size
        if self.rrc:
            return c, self.transform.img_size, self.transform.img_size
        return c, h, w

    def positions(self, g):
        """This rank's positions of global batch g in the epoch order (its strided slice r::W)."""
        return slice(g * self.global_batch + self.rank, (g + 1) * self.global_batch, self.world_size)

    def rrc_boxes(self, positions, height, width):
        """[b, 4] random-resized-crop boxes (top, left, h, w) of an image height×width for epoch positions."""
        base = sample_seed_base(self.seed, self.epoch)
        return torch.tensor([rrc_box(height, width, sample_generator(base + int(p)), self.transform.crop_scale_min)
                             for p in positions], dtype=torch.long).view(-1, 4)

    def normalise(self, x):
        """uint8 (or float in 0..255) [B, C, H, W] on the device -> float32 (x/255 − mean)/std."""
        if self._scale.device != x.device:
            self._scale, self._shift = self._scale.to(x.device), self._shift.to(x.device)
        return x.float().mul_(self._scale).add_(self._shift)

    def __iter__(self):
        return self.iter_from(0)

    def iter_weighted(self, start_batch=0):
        """(x, y, loss_scale) per batch, for training with a loss summed over the rank's samples.

        loss_scale = W / n_g, where n_g is the size of global batch g, so that DDP's gradient average over W
        ranks of Σ_rank ℓ · W / n_g is the mean gradient over the n_g samples of the global batch, however
        the last (partial) batch splits. A rank whose slice of the last batch is empty gets one stand-in
        sample with scale 0: every rank must run forward and backward for DDP's gradient all-reduce.
        """
        n = len(self.dataset)
        for g, (x, y) in enumerate(self.iter_from(start_batch), start=start_batch):
            size = min(self.global_batch, n - g * self.global_batch)
            if len(y) == 0:
                x0, y0 = next(self._single(g))
                yield x0, y0, 0.0
            else:
                yield x, y, self.world_size / size


class DeviceLoader(PlannedLoader):
    """Iterate (x float32 [B, C, H, W] normalised, y int64 [B]) on `device`; see the module docstring.

    train=False: no shuffle, no augmentation, no drop_last (shuffle/drop_last may still be set explicitly).
    crop_padding: 0 or None disables the crop. normalize: (mean, std), None = the dataset's train statistics,
    False = only scale to [0, 1]. With a random-resized-crop `transform`, the stored images are the crop
    source (`ImageTransform.source`) and each crop is resized on the device (`transforms.resized_crop_batch`).
    """

    def __init__(self, ds, batch_size, device="cpu", train=True, shuffle=None, drop_last=None, crop_padding=4,
                 flip=True, normalize=None, seed=0, rank=0, world_size=1, transform=None, augment=None):
        super().__init__(ds, batch_size, train, shuffle, drop_last, crop_padding, flip, normalize, seed, rank,
                         world_size, transform, augment)
        self.device = torch.device(device)
        self.images = ds.images.to(self.device)   # once; batches are gathered from here
        self.labels = ds.labels.to(self.device)
        self._scale, self._shift = self._scale.to(self.device), self._shift.to(self.device)

    def _batch(self, plan, positions, g=0, strong=None):
        """(x normalised, y) of the epoch-order `positions` (a slice) of global batch g, augmented as the epoch
        plan (and the strong augmentation's plan `strong`, if any) says. y is soft targets [B, K] when mixing."""
        order, offsets, flips = plan
        index = order[positions]
        # index_select rather than advanced indexing: the same rows, several times faster on a CPU
        x = self.images.index_select(0, index)
        if self.rrc:
            boxes = self.rrc_boxes(range(len(order))[positions], *self.images.shape[2:])
            x = resized_crop_batch(x, boxes, self.transform.img_size)
            if flips is not None:
                x = torch.where(flips[positions][:, None, None, None], x.flip(-1), x)
            if strong is not None and strong["randaugment"] is not None:   # RandAugment works on uint8
                x = x.round().clamp_(0, 255).to(torch.uint8)
        elif offsets is not None or flips is not None:
            x = crop_flip(x, None if offsets is None else offsets[positions],
                          None if flips is None else flips[positions], self.padding)
        y = self.labels.index_select(0, index)
        if strong is None:
            return self.normalise(x), y
        return self._strong(x, y, strong, positions, g)

    def _strong(self, x, y, strong, positions, g):
        """RandAugment (uint8) → normalise → random erasing → Mixup/CutMix, all per image from the plan."""
        from . import augment as A
        aug = self.augment
        if strong["randaugment"] is not None:
            x = A.randaugment(x, {k: v[positions] for k, v in strong["randaugment"].items()}, aug.randaugment,
                              self.fill)
        x = self.normalise(x)
        if strong["erase"] is not None:
            # the noise of the whole global batch's erased pixels from one seed, this rank's stretches taken:
            # batches stay the same for every world size
            noise = torch.Generator(device=x.device).manual_seed(strong["noise_seed"] + g)
            rows = slice(g * self.global_batch, (g + 1) * self.global_batch)
            whole = strong["erase"][rows]
            if len(range(len(whole))[self.rank::self.world_size]) == len(x):
                x = A.erase(x, strong["erase"][positions], noise, whole, self.rank, self.world_size)
            else:   # _single's zero-weight stand-in: its own box's noise
                x = A.erase(x, strong["erase"][positions], noise)
        if strong["mix"] is not None:
            # x is this batch's own tensor (normalise made it), so mixing may overwrite it
            x, y = A.mix(x, y, strong["mix"][g], aug.num_classes, aug.label_smoothing, inplace=True)
        return x, y

    def _plan_on_device(self):
        return tuple(t if t is None else t.to(self.device, non_blocking=True) for t in self.epoch_plan())

    def iter_from(self, start_batch=0):
        """Batches `start_batch`, ... of the current epoch (resuming mid-epoch gives the same batches)."""
        plan, strong = self._plan_on_device(), self.augment_plan()
        for g in range(start_batch, self.num_batches):
            yield self._batch(plan, self.positions(g), g, strong)

    def _single(self, g):
        """The first sample of global batch g, augmented as in the epoch plan."""
        pos = g * self.global_batch
        yield self._batch(self._plan_on_device(), slice(pos, pos + 1), g, self.augment_plan())
