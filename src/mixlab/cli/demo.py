"""`mixlab demo`: the five token mixers of the seed papers on Fashion-MNIST, compared in a table and a plot."""
from . import positive_int


def add_parser(sub):
    p = sub.add_parser("demo", help="train attention, token-MLP, NiNformer, Activator and AFF mixers on "
                       "Fashion-MNIST at one small budget and compare them (about 3 minutes on a 2-core CPU)")
    p.add_argument("--models", default=None, help="comma-separated model names (default: the five *_demo "
                   "configs on a CPU, the paper-size configs on a GPU)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 3 on CPU, 10 on GPU")
    p.add_argument("--subset", type=positive_int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="demo directory (default runs/demo-<timestamp>)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="train again the runs in --out that were asked differently (other --epochs, --subset, "
                        "…); without it a rerun reuses finished runs, resumes interrupted ones and refuses others")
    p.set_defaults(func=run)


def run(args):
    from ..train.demo import NEXT_STEP, run_demo
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    rows, demo_dir, plan, total = run_demo(out=args.out, models=models, device=args.device, epochs=args.epochs,
                                           subset=args.subset, batch_size=args.batch_size, seed=args.seed,
                                           data_dir=args.data_dir, log=lambda msg: print(msg, flush=True),
                                           overwrite=args.overwrite)
    print(f"\n{'model':<16} {'token mixer':<26} {'params':>8} {'GFLOPs':>7} {'train img/s':>11} "
          f"{'test top-1':>10}")
    for r in sorted(rows, key=lambda r: -r["test_top1"]):
        print(f"{r['model']:<16} {r['mixer']:<26} {r['params']:>8,} {r['gflops']:>7.4f} "
              f"{r['train_images_per_s']:>11,.0f} {r['test_top1']:>9.2f}%")
    print(f"\n{len(rows)} models × {plan.epochs} epochs ({plan.recipe} recipe, {rows[0]['precision']}) in "
          f"{total:.0f} s; test top-1 on {_test_set(rows[0]['test_images'])}; GFLOPs: forward, per image")
    print(f"run directories: {demo_dir}/<model> (metrics.csv, curves.png, weights)")
    print(f"comparison plot: {demo_dir / 'comparison.png'}")
    print(f"go further: {NEXT_STEP}")
    return 0


def _test_set(n):
    return "the full 10,000-image Fashion-MNIST test set" if n == 10_000 else f"{n:,} Fashion-MNIST test images"
