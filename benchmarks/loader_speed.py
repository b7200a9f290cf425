"""One training epoch of data, no model: mixlab's loaders against the pipelines people already use.

Built-in data (`--data`): the official NiNformer/Activator `train.py` feeds CIFAR-10 through torchvision: per
image, PIL → RandomCrop(32, padding=4) → RandomHorizontalFlip → ToTensor → Normalize(0.5, 0.5), collated by a
DataLoader. mixlab keeps the uint8 dataset on the device and crops/flips/normalises whole batches there.

A folder of image files (`--folder N`): N JPEGs of mixed sizes (`--sizes MIN MAX`, a random height and width
each, RGB with a few grayscale) are generated in a temporary ImageFolder and read at `--img-size S` by
  - mixlab's device-resident loader (decoded once into memory, then crop + flip on the device),
  - mixlab's streaming loader (decoded per epoch in DataLoader workers: resize + centre crop, crop, flip),
  - timm's `create_dataset` + `create_loader` (its training transform: random-resized crop + flip,
    no colour jitter), with the same number of workers.
Every pipeline yields float32 [B, C, S, S] normalised batches; this times producing every batch of an epoch,
median of repeats (after one warm-up epoch).

    python benchmarks/loader_speed.py --data cifar10-jpeg --batch-size 128 --device cpu --workers 0
    python benchmarks/loader_speed.py --folder 2000 --sizes 96 320 --img-size 64 --workers 2 --device cpu
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch


def time_epochs(make_iter, repeats, sync):
    times = []
    for epoch in range(repeats + 1):        # the first epoch warms up
        t0 = time.perf_counter()
        for x, y in make_iter(epoch):
            pass
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def load_average():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def make_folder(root, n, sizes, classes=10, seed=0):
    """n JPEGs (quality 90) of random height and width in [sizes[0], sizes[1]], every 10th grayscale."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / "train" / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        # smooth content compresses like a photo (noise would make every JPEG its worst case)
        base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
        (img.convert("L") if i % 10 == 0 else img).save(folder / f"{i}.jpg", quality=90)


def folder_main(args):
    import shutil
    import tempfile
    from pathlib import Path

    from mixlab.data import DeviceLoader, ImageTransform, StreamingLoader, load_dataset

    root = Path(tempfile.mkdtemp(prefix="mixlab-loader-speed-"))
    try:
        make_folder(root, args.folder, args.sizes)
        device = torch.device(args.device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        t = ImageTransform(args.img_size)
        # the streamed dataset first: it indexes the headers and computes the statistics, so the timed load
        # below is the one decoding pass of the in-memory path
        files = load_dataset(str(root), "train", transform=t, stream=True, workers=args.workers, verbose=False)
        t0 = time.perf_counter()
        memory = load_dataset(str(root), "train", transform=t, workers=args.workers, verbose=False)
        decode_once = time.perf_counter() - t0
        kw = dict(train=True, crop_padding=4, flip=True, seed=0)
        resident = DeviceLoader(memory, args.batch_size, device, **kw)
        streams = {w: StreamingLoader(files, args.batch_size, device, workers=w, **kw)
                   for w in dict.fromkeys((0, args.workers))}

        def epochs_of(loader):
            def run(epoch):
                loader.set_epoch(epoch)
                return iter(loader)
            return run

        from timm.data import create_dataset, create_loader
        timm_ds = create_dataset("", root=str(root), split="train", is_training=True)
        timm_loader = create_loader(timm_ds, input_size=(3, args.img_size, args.img_size),
                                    batch_size=args.batch_size, is_training=True, color_jitter=0.0,
                                    num_workers=args.workers, device=device, use_prefetcher=False,
                                    persistent_workers=args.workers > 0)

        def timm_epoch(epoch):
            for x, y in timm_loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

        rows = [("mixlab device-resident loader (decoded once: "
                 f"{decode_once:.1f} s, {len(memory) / decode_once:,.0f} images/s)", time_epochs(
                     epochs_of(resident), args.repeats, sync), len(resident) * args.batch_size)]
        for w, loader in streams.items():
            rows.append((f"mixlab streaming loader, {w} worker(s)", time_epochs(epochs_of(loader), args.repeats, sync),
                         len(loader) * args.batch_size))
        rows.append((f"timm create_dataset + create_loader (RRC + flip), {args.workers} worker(s)",
                     time_epochs(timm_epoch, args.repeats, sync), len(timm_loader) * args.batch_size))
        print(f"{args.folder} JPEGs of {args.sizes[0]}-{args.sizes[1]} px -> {args.img_size}x{args.img_size}, batch "
              f"{args.batch_size}, device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} cores, load average {load_average()} (after)")
        print("| pipeline | s / epoch | images/s |\n|---|---:|---:|")
        for name, seconds, n in rows:
            print(f"| {name} | {seconds:.3f} | {n / seconds:,.0f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=int, default=None, metavar="N",
                    help="time the image-file pipelines on N generated mixed-size JPEGs instead of --data")
    ap.add_argument("--sizes", type=int, nargs=2, default=(96, 320), metavar=("MIN", "MAX"))
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--data", default="cifar10-jpeg")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the torchvision pipeline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--subset", type=int, default=None)
    args = ap.parse_args()
    if args.folder:
        return folder_main(args)

    from PIL import Image
    from torchvision import transforms
    from mixlab.data import DeviceLoader, load_dataset

    ds = load_dataset(args.data, "train", subset=args.subset)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    mean, std = (0.5,) * ds.image_size[0], (0.5,) * ds.image_size[0]

    loader = DeviceLoader(ds, args.batch_size, device, train=True, crop_padding=4, flip=True,
                          normalize=(mean, std))

    def mixlab_epoch(epoch):
        loader.set_epoch(epoch)
        return iter(loader)

    images = ds.images.permute(0, 2, 3, 1).numpy()        # HWC uint8, as the PIL pipeline reads it
    labels = ds.labels.numpy()
    tf = transforms.Compose([transforms.RandomCrop(ds.image_size[1], padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])

    class PilDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            img = Image.fromarray(images[i].squeeze(-1) if images.shape[-1] == 1 else images[i])
            return tf(img), int(labels[i])

    dl = torch.utils.data.DataLoader(PilDataset(), batch_size=args.batch_size, shuffle=True, drop_last=True,
                                     num_workers=args.workers, pin_memory=device.type == "cuda")

    def torchvision_epoch(epoch):
        for x, y in dl:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    t_mixlab = time_epochs(mixlab_epoch, args.repeats, sync)
    t_tv = time_epochs(torchvision_epoch, args.repeats, sync)
    n = len(loader) * args.batch_size
    print(f"{args.data} train, {n} images an epoch, batch {args.batch_size}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, DataLoader workers {args.workers}")
    print(f"| pipeline | s / epoch | images/s |\n|---|---:|---:|")
    print(f"| mixlab DeviceLoader | {t_mixlab:.3f} | {n / t_mixlab:,.0f} |")
    print(f"| torchvision PIL transforms + DataLoader | {t_tv:.3f} | {n / t_tv:,.0f} |")
    print(f"ratio torchvision / mixlab: {t_tv / t_mixlab:.1f}×")


if __name__ == "__main__":
    main()
