"""Streaming batches: image files decoded per epoch in torch DataLoader workers, for data larger than memory.

Same engine guarantees as the device-resident loader, by construction: the main process draws the same
epoch plan (`PlannedLoader.epoch_plan`: order, crop offsets, flips, and per-sample seeds for the
random-resized crop) and hands every worker, with each sample, everything that decides it. A worker decodes
the file (Pillow), applies the run's transform (`ImageTransform`: eval resize + centre crop, then the padded
crop and flip of the plan as `crop_flip` does on the device; or the random-resized crop of the full image and
the flip), and returns uint8. The main process moves the batch to the device and normalises it with the same
arithmetic as `DeviceLoader`. So a batch is a pure function of (seed, epoch, position), whatever the number
of workers or DDP processes; for `crop_flip` it equals the device-resident loader's batch bit for bit, and a
run killed at any instant resumes bit-exactly on CPU. DDP ranks take the same strided slices r::W of each
global batch, and a rank with an empty slice of the last batch gets the same zero-weight stand-in.

Strong augmentation (augment.py) runs here as timm runs it: the worker applies timm's RandAugment to the
PIL image after the crop and flip, with Python's and NumPy's generators seeded by the sample's seed; the main
process applies timm's `RandomErasing` per image (its generators seeded the same way) and timm's `Mixup`
per batch (NumPy seeded by the global batch), on the normalised batch. Every seeding saves and restores the
generators it borrows. The ops and magnitudes follow the same distribution as on the device (a test
compares them); the values differ, since the device draws from its own generators.

The one difference is the random-resized crop: here it is cut from the full-resolution file, as timm does;
the device-resident loader cuts it from the stored crop source (`ImageTransform.source`).
"""
import contextlib
import random
import weakref

import numpy as np
import torch

from .files import DecodeError, make_loader
from .loader import PlannedLoader, sample_seed_base
from .transforms import pil_to_tensor, sample_generator, tensor_to_pil


@contextlib.contextmanager
def seeded(seed, torch_too=False):
    """Python's and NumPy's global generators (and torch's CPU one) seeded with `seed` inside, restored after:
    timm's transforms draw from them."""
    py, npy = random.getstate(), np.random.get_state()
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    with torch.random.fork_rng(devices=[]) if torch_too else contextlib.nullcontext():
        if torch_too:
            torch.manual_seed(int(seed))
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _posterize(img, bits_to_keep, **_):
    """timm's posterize, with 0 bits kept giving black as older Pillow did (Pillow ≥ 10 refuses 0, which
    rand-m9-mstd0.5-inc1 reaches whenever the magnitude clips at 10)."""
    from PIL import ImageOps
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def timm_randaugment(text, fill, size):
    """timm's RandAugment for `text` (e.g. rand-m9-mstd0.5-inc1) as its create_transform builds it for
    training at side `size`: the run's mean colour as fill, bilinear resampling."""
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform
    hparams = {"translate_const": int(size * 0.45), "img_mean": fill[0] if len(fill) == 1 else tuple(fill),
               "interpolation": Image.BILINEAR}
    ra = rand_augment_transform(text, hparams)
    for op in ra.ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = _posterize
    return ra


class _TrainItems(torch.utils.data.Dataset):
    """Worker side: item = (row, dy, dx, flip, sample seed) -> (uint8 [C, S, S], label)."""

    def __init__(self, fds, padding, rrc, randaugment=None):
        self.fds, self.padding, self.rrc = fds, padding, rrc
        self.labels = fds.labels.tolist()
        self.randaugment = randaugment   # timm's RandAugment, or None

    def __len__(self):
        return len(self.fds)

    def __getitem__(self, item):
        row, dy, dx, flip, seed = item
        try:
            img = self.fds.open(row)
        except DecodeError as e:
            return None, str(e)
        if self.rrc:
            x = pil_to_tensor(self.fds.transform.random_resized_crop_pil(img, sample_generator(seed)))
            x = x.flip(-1) if flip else x
        else:
            x = pil_to_tensor(self.fds.transform.eval_pil(img))
            x = torch.from_numpy(crop_flip_one(x.numpy(), dy, dx, flip, self.padding))
        if self.randaugment is not None:
            with seeded(seed):
                x = pil_to_tensor(self.randaugment(tensor_to_pil(x)))
        return x, self.labels[row]


def crop_flip_one(x, dy, dx, flip, padding):
    """`loader.crop_flip` of one uint8 image [C, H, W] (numpy), by slicing: out[:, i, j] = x[:, dy + i − p,
    dx + j − p] where that lies inside x, else 0; then the flip. Equal to the batched gather, bit for bit."""
    if dy is not None:
        _, h, w = x.shape
        sy, sx = dy - padding, dx - padding
        out = np.zeros_like(x)
        y0, y1, x0, x1 = max(0, -sy), min(h, h - sy), max(0, -sx), min(w, w - sx)
        if y0 < y1 and x0 < x1:
            out[:, y0:y1, x0:x1] = x[:, y0 + sy:y1 + sy, x0 + sx:x1 + sx]
        x = out
    return np.ascontiguousarray(x[:, :, ::-1]) if flip else x


class _PlanSampler:
    """Batch sampler over this rank's slices of the current epoch's global batches, from `start`."""

    def __init__(self, loader):
        # a weak reference: no cycle, so a dropped loader (and its worker processes) goes at once, never in a
        # garbage collection inside some later forked process
        self.loader, self.plan, self.start = weakref.proxy(loader), None, 0

    def batch(self, g, plan):
        order, offsets, flips = plan
        base = sample_seed_base(self.loader.seed, self.loader.epoch) if self.loader.per_sample_seeds else None
        items = []
        for p in range(len(order))[self.loader.positions(g)]:
            dy, dx = (None, None) if offsets is None else offsets[p].tolist()
            items.append((int(order[p]), dy, dx, None if flips is None else bool(flips[p]),
                          None if base is None else base + p))
        return items

    def __iter__(self):
        for g in range(self.start, len(self)):
            yield self.batch(g, self.plan)

    def __len__(self):
        """Global batches in which this rank has at least one sample (only the last may leave it none)."""
        loader = self.loader
        return sum(1 for g in range(loader.num_batches) if g * loader.global_batch + loader.rank < len(loader.dataset))


class StreamingLoader(PlannedLoader):
    """Iterate (x float32 [B, C, S, S] normalised, y int64 [B]) on `device` from a `FileDataset`, decoding in
    `workers` DataLoader processes (0: in this process). Arguments as `DeviceLoader`; see the module docstring."""

    def __init__(self, fds, batch_size, device="cpu", train=True, shuffle=None, drop_last=None, crop_padding=4,
                 flip=True, normalize=None, seed=0, rank=0, world_size=1, workers=0, augment=None):
        super().__init__(fds, batch_size, train, shuffle, drop_last, crop_padding, flip, normalize, seed, rank,
                         world_size, fds.transform, augment)
        self.device = torch.device(device)
        self.workers = int(workers)
        self.sampler = _PlanSampler(self)
        aug = self.augment
        ra = timm_randaugment(aug.randaugment.text, self.fill, fds.image_size[-1]) \
            if aug is not None and aug.randaugment is not None else None
        self.per_sample_seeds = self.rrc or ra is not None
        self._erasing = self._mixup = None
        if aug is not None and aug.random_erasing > 0:
            from timm.data.random_erasing import RandomErasing
            self._erasing = RandomErasing(aug.random_erasing, mode="pixel", device="cpu")
        if aug is not None and aug.mixing:
            from timm.data.mixup import Mixup
            self._mixup = Mixup(mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix, prob=aug.mix_prob,
                                switch_prob=aug.switch_prob, mode="batch", label_smoothing=aug.label_smoothing,
                                num_classes=aug.num_classes)
        self.items = _TrainItems(fds, self.padding, self.rrc, ra)
        self.loader = make_loader(self.items, self.sampler, self.workers, pin_memory=self.device.type == "cuda",
                                  persistent=True)

    def close(self):
        """Stop the persistent worker processes now (they also stop when the loader is dropped)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def _to_device(self, batch, g=None):
        if isinstance(batch, str):
            raise DecodeError(batch)
        x, y = batch
        x, y = self.normalise(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
        if g is not None and (self._erasing is not None or self._mixup is not None):
            x, y = self._strong(x, y, g)
        return x, y

    def _strong(self, x, y, g):
        """timm's RandomErasing per image, then timm's Mixup/CutMix of the batch, on the normalised batch."""
        from timm.data.mixup import mixup_target
        from .augment import _generator
        if self._erasing is not None:
            base = _generator("stream-erase", self.seed, self.epoch)
            cpu = x.cpu()
            for i, p in enumerate(list(range(len(self.dataset))[self.positions(g)])[:len(x)]):
                with seeded(base + p, torch_too=True):
                    self._erasing(cpu[i])
            x = cpu.to(self.device)
        if self._mixup is not None:
            with seeded(_generator("stream-mix", self.seed, self.epoch) + g):
                # _mix_batch: Mixup.__call__ refuses odd batches, which the last one (or a DDP slice) can be
                lam = self._mixup._mix_batch(x)
            y = mixup_target(y, self._mixup.num_classes, lam, self._mixup.label_smoothing)
        return x, y

    def iter_from(self, start_batch=0):
        """Batches `start_batch`, ... of the current epoch (resuming mid-epoch gives the same batches)."""
        self.sampler.plan, self.sampler.start = self.epoch_plan(), start_batch
        produced = max(0, len(self.sampler) - start_batch)
        for g, batch in enumerate(self.loader if produced else (), start=start_batch):
            yield self._to_device(batch, g)
        c, h, w = self.dataset.image_size
        for _ in range(max(start_batch, len(self.sampler)), self.num_batches):   # an empty slice of the last batch
            yield (torch.empty((0, c, h, w), device=self.device),
                   torch.empty((0,), dtype=torch.int64, device=self.device))

    def _single(self, g):
        """The first sample of global batch g, augmented as in the epoch plan (decoded in this process)."""
        plan = self.epoch_plan()
        pos = g * self.global_batch
        order, offsets, flips = plan
        base = sample_seed_base(self.seed, self.epoch) if self.per_sample_seeds else None
        dy, dx = (None, None) if offsets is None else offsets[pos].tolist()
        item = (int(order[pos]), dy, dx, None if flips is None else bool(flips[pos]),
                None if base is None else base + pos)
        x, y = self.items[item]
        if x is None:
            raise DecodeError(y)
        x, y = self._to_device((x[None], torch.tensor([y])))
        if self._mixup is not None:   # a zero-weight stand-in: its targets only need the soft shape
            from timm.data.mixup import mixup_target
            y = mixup_target(y, self._mixup.num_classes, 1.0, self._mixup.label_smoothing)
        yield x, y
