"""One training epoch of data, no model: mixlab's DeviceLoader against the official scripts' pipeline.

The official NiNformer/Activator `train.py` feeds CIFAR-10 through torchvision: per image, PIL →
RandomCrop(32, padding=4) → RandomHorizontalFlip → ToTensor → Normalize(0.5, 0.5), collated by a DataLoader.
mixlab keeps the uint8 dataset on the device and crops/flips/normalises whole batches there. Both produce the
same kind of batch (float32 [B, 3, 32, 32], normalised, augmented); this times producing every batch of an
epoch, median of repeats, and prints the ratio.

    python benchmarks/loader_speed.py --data cifar10-jpeg --batch-size 128 --device cpu --workers 0
"""
import argparse
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10-jpeg")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the torchvision pipeline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--subset", type=int, default=None)
    args = ap.parse_args()

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
