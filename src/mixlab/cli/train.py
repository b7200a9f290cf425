"""`mixlab train` (train a model, or --resume a run) and `mixlab eval` (score a run's checkpoint)."""
from . import add_compile_argument, add_log_argument, json_object, nonnegative_int, parse_overrides, positive_int


from ..train.config import DATA_PATHS
from ..train.recipes import PRECISIONS

RECIPE_FILE_EXAMPLE = """\
a recipe file (--recipe my_recipe.yaml, or .json) holds the keys of the built-in recipes
(src/mixlab/recipes/*.json); a key left out takes its default, an unknown key is refused:

  name: my_recipe            # what the run records (default: the file's stem)
  description: AdamW + cosine, 50 epochs, for 28x28 data
  optimizer: adamw           # adam | adamw | sgd
  lr: 1.0e-3
  lr_base_batch_size: 256    # lr is per 256 images, scaled with --batch-size
  weight_decay: 0.05
  batch_size: 256
  epochs: 50
  schedule: cosine           # constant | cosine | multistep
  warmup_epochs: 5
  min_lr: 1.0e-5
  label_smoothing: 0.1
  grad_clip: 1.0
  precision: auto            # auto | fp32 | bf16 | fp16

  mixlab train --model vit_tiny --data fashion-mnist --recipe my_recipe.yaml --log tensorboard
"""


def add_parser(sub):
    import argparse
    p = sub.add_parser("train", help="train a model on a dataset (or continue a run with --resume)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RECIPE_FILE_EXAMPLE)
    p.add_argument("--model", help="registered model name (`mixlab models` lists them)")
    p.add_argument("--data", help="mnist, fashion-mnist, cifar10, cifar100, cifar10-jpeg, synthetic[:spec], an "
                   "ImageFolder directory or a file list (.csv/.tsv/.txt of path,label)")
    p.add_argument("--recipe", default="auto", help="auto | paper | dianet | mixlab | demo | ddpm | path/to/recipe.yaml "
                   "(or .json; the keys of the built-in recipes, see below) (auto: paper for *_paper models, dianet "
                   "for ResNets, mixlab otherwise)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the recipe's")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="global batch, split over DDP ranks; default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's (scaled with the batch if it says so)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto (bf16 on CUDA, fp32 on CPU) | fp32 (TF32 off) | bf16 | fp16 (with a gradient "
                        "scaler); default: the recipe's (paper, dianet, demo: fp32; mixlab, ddpm: auto)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on a stratified N-image subset, test on at most N")
    p.add_argument("--validation", type=positive_int, default=None, metavar="N",
                   help="hold out a stratified N of the training images as the evaluation split: the epochs' "
                        "scores and best.safetensors are then chosen on it, never on the test set, and "
                        "best.safetensors becomes the run's default weights (without it: last.safetensors)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--out", default=None, help="run directory (default runs/<model>-<data>-<timestamp>)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its last complete epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (finished or not); without it such a run is refused")
    add_compile_argument(p)
    add_log_argument(p)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--eval-batch-size", type=positive_int, default=1000, metavar="N",
                   help="images per evaluation batch (default 1000; only speed and memory depend on it)")
    p.add_argument("--data-dir", default=None, help="where datasets live (default: $MIXLAB_DATA, ~/.cache/mixlab, ...)")
    p.add_argument("--model-kwargs", type=json_object, default={}, metavar="JSON",
                   help='model overrides, e.g. \'{"depth": 6, "drop_rate": 0.1}\'')
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set ema_decay=0.999 --set test_augment=true")
    p.add_argument("--img-size", type=positive_int, default=None, metavar="N",
                   help="resize every image to N×N (recipe key img_size; eval: shorter side to N/crop_pct, centre "
                        "crop). Default: the data's own size, or for image files of mixed or unfit sizes the "
                        "model's native size")
    p.add_argument("--task", default="auto", choices=["auto", "classification", "diffusion", "segmentation", "detection"],
                   help="what the model learns (auto: its registration: UNets denoise, the rest classify); "
                        "segmentation / detection put a head on the --model backbone and read a dense folder "
                        "(VOC, ADE20K, COCO, images+masks) given as --data")
    p.add_argument("--head", default=None, help="dense head: deeplabv3 (default) | fpn for segmentation, "
                   "retinanet (default) | fcos for detection")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="dense tasks: train only the head, on the backbone as initialised (a random-feature "
                        "baseline)")
    p.add_argument("--data-path", choices=DATA_PATHS, default="auto",
                   help="memory: decode image files once and keep them on the training device; stream: decode "
                        "them per epoch in DataLoader workers (data larger than memory); auto (default): stream "
                        "when the decoded images would not fit half the available RAM (or GPU memory)")
    p.add_argument("--data-workers", type=nonnegative_int, default=None, metavar="N",
                   help="DataLoader processes decoding image files (default: 0 below 512 files, else one per "
                        "intra-op thread, at most 8)")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="top-1 and loss of a run's default checkpoint (last, or best when its best "
                       "epoch was chosen on a --validation split)")
    e.add_argument("--run", required=True, metavar="DIR", help="run directory written by `mixlab train`")
    e.add_argument("--data", default=None, help="dataset (default: the one the run trained on)")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--weights", default=None,
                   help="best | last | a file name in the run directory (default: last.safetensors, or "
                        "best.safetensors for a run trained with --validation; a run without it chose its best "
                        "epoch on the test split, and the output says so)")
    e.add_argument("--subset", type=positive_int, default=None, help="at most N images of the split")
    e.add_argument("--device", default="auto")
    e.add_argument("--data-dir", default=None)
    e.set_defaults(func=run_eval)


def run_train(args):
    from ..train import TrainConfig, train
    overrides = parse_overrides(args.set)
    if args.precision:
        overrides["precision"] = args.precision
    if args.img_size:
        overrides["img_size"] = args.img_size
    config = TrainConfig(model=args.model, data=args.data, recipe=args.recipe, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, subset=args.subset,
                         validation=args.validation, device=args.device,
                         out=args.out, resume=args.resume, overwrite=args.overwrite, compile=args.compile,
                         seed=args.seed, data_dir=args.data_dir, model_kwargs=args.model_kwargs,
                         overrides=overrides, data_path=args.data_path, data_workers=args.data_workers,
                         trackers=args.log, eval_batch_size=args.eval_batch_size, task=args.task, head=args.head,
                         freeze_backbone=args.freeze_backbone)
    s = train(config)
    if s is None:
        return 0
    # a classifier reports top-1 (%), a segmenter mIoU (%), a detector mAP (%), a denoiser its test loss
    title, key, digits = next(((t, k, 2) for t, k in (("test top-1", "test_top1"), ("test mIoU", "test_miou"),
                                                      ("test mAP", "test_map")) if k in s), ("test loss", "test_loss", 4))
    best = f"{s['best_' + key]:.{digits}f}" if s.get("best_" + key) is not None else "-"
    # the metrics are named test_* whichever split the run evaluated on; a --validation run's is held out
    split = "val" if s.get("validation") else "test"
    title = title.replace("test", split, 1)
    print(f"\nbest {split}: the best epoch's score on the validation split (best.safetensors, the run's default "
          f"weights)" if split == "val" else
          f"\nbest {split}: the best score any epoch reached on the test split, which chose that epoch: no result "
          f"(the final epoch's {title} is; last.safetensors holds its weights)")
    print(f"{'model':<20} {'dataset':<14} {'recipe':<8} {'epochs':>6} {'params':>11} {title:>10} "
          f"{f'best {split}':>9} {'seconds':>8}")
    print(f"{s['model']:<20} {s['dataset']:<14} {s['recipe']:<8} {s['epochs']:>6} {s['params']:>11,} "
          f"{s[key]:>10.{digits}f} {best:>9} {s['train_seconds']:>8.1f}")
    if s.get("collapsed"):
        print(f"WARNING: the run collapsed: {s['collapse_reason']}")
    return 0 if s.get("completed") else 1


def run_eval(args):
    from ..train import evaluate_run
    r = evaluate_run(args.run, data=args.data, split=args.split, weights=args.weights, device=args.device,
                     data_dir=args.data_dir, subset=args.subset)
    top1 = f"top-1 {r['top1']:.2f}%  " if r.get("top1") is not None else ""   # None: a denoiser's test loss
    names = (("miou", "mIoU"), ("pixel_acc", "pixel accuracy"), ("map", "mAP"), ("map50", "mAP@0.5"))
    dense = "".join(f"{label} {r[k]:.2f}%  " for k, label in names if r.get(k) is not None)   # dense runs
    from ..rundir import weights_label
    print(f"{r['model']} {weights_label(args.run, r['weights'])} on {r['dataset']} {r['split']} ({r['n']} images): {top1}{dense}"
          f"loss {r['loss']:.4f}")
    return 0
