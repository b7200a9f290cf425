"""`mixlab demo`: train the four paper models briefly on Fashion-MNIST and print a comparison table."""


def add_parser(sub):
    p = sub.add_parser("demo", help="train ViT, MLP-Mixer, NiNformer and Activator briefly on Fashion-MNIST "
                       "and compare them (about two minutes on a 2-core CPU)")
    p.add_argument("--models", default=None, help="comma-separated model names (default: the four paper models)")
    p.add_argument("--epochs", type=int, default=None, help="default: 2 on CPU, 10 on GPU")
    p.add_argument("--subset", type=int, default=None, help="training images (default: 500 on CPU, all on GPU)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="demo directory (default runs/demo-<timestamp>)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args):
    from ..train.demo import DEMO_MODELS, run_demo
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(DEMO_MODELS)
    rows, demo_dir = run_demo(out=args.out, models=models, device=args.device, epochs=args.epochs,
                              subset=args.subset, batch_size=args.batch_size, seed=args.seed,
                              data_dir=args.data_dir, log=lambda msg: print(msg, flush=True))
    print(f"\n{'model':<18} {'params':>11} {'test top-1':>11} {'seconds':>8}")
    for r in rows:
        print(f"{r['model']:<18} {r['params']:>11,} {r['test_top1']:>10.2f}% {r['seconds']:>8.1f}")
    print(f"\nrun directories: {demo_dir}/<model> (metrics.csv, curves.png, weights)")
    print(f"comparison plot: {demo_dir / 'comparison.png'}")
    return 0
