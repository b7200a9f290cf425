"""`mixlab demo`: the five token mixers of the seed papers on Fashion-MNIST, as the smallest `mixlab compare`."""
import sys

from . import positive_int


def add_parser(sub):
    p = sub.add_parser("demo", help="train attention, token-MLP, NiNformer, Activator and AFF mixers on "
                       "Fashion-MNIST at one small budget and compare them (about 3 minutes on a 2-core CPU): "
                       "the smallest protocol of `mixlab compare`")
    p.add_argument("--mixers", default=None, help="comma-separated token mixers (default: attention,token_mlp,"
                   "nin_gating,glu_gating,aff)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 3 on CPU, 10 on GPU")
    p.add_argument("--subset", type=positive_int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per mixer (default 1; 3 for error bars)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="demo directory (default runs/demo-<timestamp>); a rerun into it "
                   "reuses finished runs and resumes interrupted ones")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=run)


def run(args):
    from ..compare.demo import NEXT_STEP, run_demo
    from ..compare.report import format_table
    mixers = [m.strip() for m in args.mixers.split(",") if m.strip()] if args.mixers else None
    result, protocol, out = run_demo(out=args.out, mixers=mixers, device=args.device, epochs=args.epochs,
                                   subset=args.subset, batch_size=args.batch_size, seeds=args.seeds,
                                   data_dir=args.data_dir, log=lambda msg: print(msg, flush=True),
                                   command="mixlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["demo"] else None)
    rows = [r for r in result["rows"] if r["seeds"]]
    n_test = rows[0]["seeds"][0]["test_images"] if rows else 0
    print()
    print(format_table(result))
    print(f"\n{len(result['rows'])} token mixers × {protocol.epochs} epochs (recipe {protocol.recipe}, "
          f"{', '.join(result['environment'].get('precision') or [])}); test top-1 on {_test_set(n_test)}; "
          f"GFLOPs: forward, per image")
    print(f"table and Pareto plots: {out}/compare.md, compare.csv, compare.json, pareto.png; "
          f"run directories in {out}/runs/")
    print(f"go further: {NEXT_STEP}")
    for line in result["failed"]:
        print(f"FAILED {line}")
    return 1 if result["failed"] else 0


def _test_set(n):
    return "the full 10,000-image Fashion-MNIST test set" if n == 10_000 else f"{n:,} Fashion-MNIST test images"
