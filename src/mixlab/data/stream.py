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

The one difference is the random-resized crop: here it is cut from the full-resolution file, as timm does;
the device-resident loader cuts it from the stored crop source (`ImageTransform.source`).
"""
import weakref

import numpy as np
import torch

from .files import DecodeError, make_loader
from .loader import PlannedLoader, sample_seed_base
from .transforms import pil_to_tensor, sample_generator


class _TrainItems(torch.utils.data.Dataset):
    """Worker side: item = (row, position, dy, dx, flip, sample seed) -> (uint8 [C, S, S], label)."""

    def __init__(self, fds, padding, rrc):
        self.fds, self.padding, self.rrc = fds, padding, rrc
        self.labels = fds.labels.tolist()

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
            return (x.flip(-1) if flip else x), self.labels[row]
        x = pil_to_tensor(self.fds.transform.eval_pil(img))
        return torch.from_numpy(crop_flip_one(x.numpy(), dy, dx, flip, self.padding)), self.labels[row]


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
        base = sample_seed_base(self.loader.seed, self.loader.epoch) if self.loader.rrc else None
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
                 flip=True, normalize=None, seed=0, rank=0, world_size=1, workers=0):
        super().__init__(fds, batch_size, train, shuffle, drop_last, crop_padding, flip, normalize, seed, rank,
                         world_size, fds.transform)
        self.device = torch.device(device)
        self.workers = int(workers)
        self.sampler = _PlanSampler(self)
        self.items = _TrainItems(fds, self.padding, self.rrc)
        self.loader = make_loader(self.items, self.sampler, self.workers, pin_memory=self.device.type == "cuda",
                                  persistent=True)

    def close(self):
        """Stop the persistent worker processes now (they also stop when the loader is dropped)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def _to_device(self, batch):
        if isinstance(batch, str):
            raise DecodeError(batch)
        x, y = batch
        return self.normalise(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def iter_from(self, start_batch=0):
        """Batches `start_batch`, ... of the current epoch (resuming mid-epoch gives the same batches)."""
        self.sampler.plan, self.sampler.start = self.epoch_plan(), start_batch
        produced = max(0, len(self.sampler) - start_batch)
        for batch in self.loader if produced else ():
            yield self._to_device(batch)
        c, h, w = self.dataset.image_size
        for _ in range(max(start_batch, len(self.sampler)), self.num_batches):   # an empty slice of the last batch
            yield (torch.empty((0, c, h, w), device=self.device),
                   torch.empty((0,), dtype=torch.int64, device=self.device))

    def _single(self, g):
        """The first sample of global batch g, augmented as in the epoch plan (decoded in this process)."""
        plan = self.epoch_plan()
        pos = g * self.global_batch
        order, offsets, flips = plan
        base = sample_seed_base(self.seed, self.epoch) if self.rrc else None
        dy, dx = (None, None) if offsets is None else offsets[pos].tolist()
        item = (int(order[pos]), dy, dx, None if flips is None else bool(flips[pos]),
                None if base is None else base + pos)
        x, y = self.items[item]
        if x is None:
            raise DecodeError(y)
        yield self._to_device((x[None], torch.tensor([y])))
