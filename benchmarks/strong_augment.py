"""The strong recipe's augmentation on a CPU: its share of a training step, and the device-resident batched
pipeline against timm's per-image CPU pipeline with the same ops.

    PYTHONPATH=src python benchmarks/strong_augment.py [--threads 1] [--batch 128] [--reps 5]

Per model (32 px, 3 channels, 10 classes, the recipe's drop_path): a training step as the engine runs the
strong recipe's (the classification task's soft-target loss, backward, gradient clipping at the recipe's norm,
the recipe's AdamW with its weight-decay filter, fast dropout; `engine._backward_and_step`) on a prepared batch, and the strong augmentation of one batch (RandAugment rand-m9-mstd0.5-inc1
+ crop/flip + erasing 0.25 + Mixup/CutMix, `DeviceLoader`), timed interleaved in one process (median of reps);
share = augmentation / (augmentation + step). A batch's time is an epoch of the 4-batch dataset ÷ 4, so the
per-epoch plan is spread over the epoch's batches as in training (not charged whole to one batch). Pipeline: images/s of the device path against timm's
(`rand_augment_transform` on PIL images, ToTensor, Normalize, `RandomErasing` per image, `Mixup` per batch).
"""
import argparse
import os
import statistics
import time

import torch


def _median_time(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", default="vit_demo,mixer_demo,vit_tiny,mixer_tiny")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mixlab import create_model
    from mixlab.data import DeviceLoader
    from mixlab.data.augment import Augmentation
    from mixlab.data.dataset import ImageDataset
    from mixlab.layers.dropout import use_fast_dropout
    from mixlab.train.classification import ClassificationTask
    from mixlab.train.engine import _backward_and_step, build_optimizer
    from mixlab.train.precision import Precision
    from mixlab.train.recipes import load_recipe
    from types import SimpleNamespace

    b = args.batch
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b * 4, 3, 32, 32), generator=g, dtype=torch.uint8)
    ds = ImageDataset(images, torch.arange(len(images)) % 10, [str(k) for k in range(10)], (0.5,) * 3, (0.25,) * 3,
                      name="bench")
    recipe = load_recipe("strong")
    aug = Augmentation.from_recipe(recipe, 10)
    loader = DeviceLoader(ds, b, augment=aug, normalize=((0.5,) * 3, (0.25,) * 3))
    plain = DeviceLoader(ds, b, normalize=((0.5,) * 3, (0.25,) * 3))

    def augment_batch():   # one batch's share of an epoch (plan included)
        for _ in loader:
            pass

    def plain_batch():
        for _ in plain:
            pass
    per = len(loader)
    x, y = next(iter(loader))
    print(f"threads {args.threads}, batch {b}, torch {torch.__version__}, load average {os.getloadavg()}")
    print("| model | step ms | strong batch ms | crop+flip batch ms | augmentation share |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        kw = {"patch_size": 8} if name.endswith("_demo") else {}
        model = create_model(name, num_classes=10, in_chans=3, img_size=32,
                             drop_path_rate=recipe.drop_path_rate, **kw)
        if recipe.fast_dropout:
            use_fast_dropout(model)
        model.train()
        # the engine's step of the strong recipe (engine.train_epoch): the task's loss, zero_grad, backward,
        # clipping and the optimiser step, fp32 (what precision 'auto' is on a CPU)
        run = SimpleNamespace(net=model, model=model, optimizer=build_optimizer(model, recipe), scaler=None,
                              recipe=recipe, precision=Precision("auto", torch.device("cpu")))
        task = ClassificationTask()

        def step():
            loss, _ = task.loss(run, x, y, 0, 1.0 / len(x))
            run.optimizer.zero_grad(set_to_none=True)
            _backward_and_step(run, loss)
        step()
        t_step, t_aug, t_plain = [], [], []
        for _ in range(args.reps):   # interleaved
            t_step.append(_median_time(step, 1))
            t_aug.append(_median_time(augment_batch, 1))
            t_plain.append(_median_time(plain_batch, 1))
        s, a, p = statistics.median(t_step), statistics.median(t_aug) / per, statistics.median(t_plain) / per
        print(f"| {name} | {1e3 * s:.1f} | {1e3 * a:.1f} | {1e3 * p:.1f} | {100 * a / (a + s):.1f} % |")

    # the same ops image by image with timm on PIL images (what a DataLoader worker does per sample)
    import numpy as np
    from PIL import Image
    from timm.data.mixup import Mixup
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T
    from mixlab.data.stream import timm_randaugment
    ra = timm_randaugment(recipe.randaugment, [128] * 3, 32)
    per_image = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), ra, T.ToTensor(),
                           T.Normalize((0.5,) * 3, (0.25,) * 3), RandomErasing(0.25, mode="pixel", device="cpu")])
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    pil = [Image.fromarray(np.ascontiguousarray(im.numpy().transpose(1, 2, 0))) for im in images[:b]]
    labels = torch.arange(b) % 10

    def timm_batch():
        xb = torch.stack([per_image(im) for im in pil])
        mixup(xb, labels)
    t_timm, t_dev = [], []
    for _ in range(args.reps):
        t_timm.append(_median_time(timm_batch, 1))
        t_dev.append(_median_time(augment_batch, 1))
    tt, td = statistics.median(t_timm), statistics.median(t_dev) / per
    print(f"\npipeline, {b} images: timm per-image {b / tt:.0f} img/s, mixlab device-resident {b / td:.0f} img/s, "
          f"ratio {tt / td:.1f}x")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
