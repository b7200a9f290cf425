"""`mixlab compare`: token mixers in one skeleton at one budget over several seeds, in one table."""
import sys

from . import add_log_argument, parse_overrides, positive_int


def _floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lr-grid takes comma-separated numbers, got {text!r}") from None


def add_parser(sub):
    from .reproduce import add_launch_arguments
    p = sub.add_parser("compare", help="which token mixer is best at equal cost: one skeleton, one budget, several "
                       "seeds, a table with error bars and Pareto plots (resumable)",
                       description="Example: mixlab compare --mixers attention,token_mlp,pooling,identity --data "
                       "cifar10 --budget 2e13flops --seeds 3 --baseline attention --out runs/compare. Rerun the "
                       "same command to complete an interrupted compare.")
    p.add_argument("--mixers", required=True, help="comma-separated registered mixers and/or path/to/file.py:Class")
    p.add_argument("--data", required=True)
    p.add_argument("--budget", default="3epochs", help="per run: 2e13flops (training FLOPs), 3000steps, 3epochs, "
                   "300s or 5min (of this device); the recipe's schedule is laid over it (default 3epochs)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..K-1 per mixer (default 3)")
    p.add_argument("--recipe", default="mixlab", help="recipe name or .json (default mixlab)")
    p.add_argument("--skeleton", default=None, help="demo | small | paper (default small); the flags below override it")
    p.add_argument("--width", type=positive_int, default=None)
    p.add_argument("--depth", type=positive_int, default=None)
    p.add_argument("--patch", type=positive_int, default=None)
    p.add_argument("--mlp-ratio", type=float, default=None)
    p.add_argument("--match", choices=("params", "flops"), default=None,
                   help="adjust each mixer's width to within 5%% of the first mixer's params or FLOPs")
    p.add_argument("--lr-grid", type=str, default=None, metavar="LR,LR,…",
                   help="choose each mixer's lr on a validation split carved from the training set")
    p.add_argument("--validation", type=positive_int, default=None, metavar="N",
                   help="images held out for --lr-grid (default a tenth of the training set)")
    p.add_argument("--baseline", default=None, help="a mixer each other one is compared against (Welch's t-test)")
    p.add_argument("--subset", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe key for every run")
    p.add_argument("--no-measure", action="store_true", help="skip the per-mixer step-time and peak-memory bench")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/compare")
    add_launch_arguments(p)
    add_log_argument(p)
    p.set_defaults(func=run)


def run(args):
    from ..compare import CompareConfig, run_compare
    from ..compare.report import format_table
    cc = CompareConfig(mixers=[m.strip() for m in args.mixers.split(",") if m.strip()], data=args.data,
                       budget=args.budget, seeds=args.seeds, recipe=args.recipe, out=args.out, skeleton=args.skeleton,
                       width=args.width, depth=args.depth, patch=args.patch, mlp_ratio=args.mlp_ratio, match=args.match,
                       lr_grid=_floats(args.lr_grid) if args.lr_grid else None, validation=args.validation,
                       baseline=args.baseline, subset=args.subset, batch_size=args.batch_size,
                       overrides=parse_overrides(args.set), device=args.device, data_dir=args.data_dir,
                       workers=args.workers, launcher=args.launcher, address=args.address,
                       threads=args.threads_per_run, runs_per_gpu=args.runs_per_gpu, cpus_per_run=args.cpus_per_run,
                       measure=not args.no_measure, trackers=args.log)
    result = run_compare(cc, log=lambda m: print(m, file=sys.stderr, flush=True),
                         command="mixlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else None)
    print(format_table(result))
    print(f"\n{args.out}/compare.md, compare.csv, compare.json, pareto.png; run directories in {args.out}/runs/")
    for line in result["failed"]:
        print(f"FAILED {line}")
    return 1 if result["failed"] else 0
