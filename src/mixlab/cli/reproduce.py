"""`mixlab reproduce TABLE`: a paper's table trained here and printed beside the published numbers."""
import json
import shlex
import sys

from . import add_compile_argument, add_log_argument, parse_overrides, positive_int


def add_parser(sub):
    from ..reproduce.tables import TABLES
    from ..train.recipes import list_recipes
    p = sub.add_parser("reproduce", help="regenerate a paper's table beside its published numbers",
                       description="Train every (dataset, model, seed) of a paper's table as ordinary run "
                       "directories (rerun the same command to resume), then print ours (final-epoch test "
                       "top-1, or Fréchet distance for the diffusion table; mean ± std over seeds) beside the "
                       "published numbers. Tables: "
                       + "; ".join(f"{k}: {v.title}" for k, v in TABLES.items()))
    p.add_argument("table", choices=list(TABLES), help="which paper's table")
    p.add_argument("--datasets", default=None,
                   help="comma list of the table's datasets (default: all; cifar10 uses the lossless copy "
                        "when present, else cifar10-jpeg, marked lossy)")
    p.add_argument("--models", default=None, help="comma list of the table's models (default: all)")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..K-1 per (model, dataset) (default 1)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="budget; default the recipe's (reported as such)")
    p.add_argument("--recipe", default=None, help=f"{' | '.join(list_recipes())} or a recipe .json "
                   "(default: the table's own)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on a stratified N-image subset (smoke runs)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    add_compile_argument(p, "each model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key for every run, e.g. --set test_augment=true (the official "
                        "2024 quirk); the default --out then names it")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="runs/reproduce/<table>[-<recipe>] by default")
    p.add_argument("--overwrite", action="store_true",
                   help="train again the runs whose directory holds a run of another request (other epochs, "
                        "subset, …); without it such a run is refused before anything trains")
    p.add_argument("--json", dest="json_path", default=None, help="also write the JSON rows here")
    p.add_argument("--markdown", default=None, help="also write the markdown table here")
    p.add_argument("--plot", action="store_true",
                   help="also plot top-1 against forward FLOPs per image (OUT/<table>-accuracy-vs-flops.png)")
    p.add_argument("--fid", choices=("auto", "inception", "classifier"), default="auto",
                   help="diffusion table: the Fréchet-distance feature space (auto: Inception when its weights "
                        "are at hand, else a mixlab classifier trained on the same data)")
    p.add_argument("--fid-samples", type=positive_int, default=None,
                   help="diffusion table: samples per run for the Fréchet distance (default: the test-set size, "
                        "at most 10,000)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs and their state) and stop")
    add_log_argument(p)
    add_launch_arguments(p)
    p.set_defaults(func=run)


def add_launch_arguments(p):
    """The fan-out flags, shared by `reproduce` and `sweep` (mixlab.reproduce.launch)."""
    g = p.add_argument_group("running several runs at once")
    g.add_argument("--workers", type=positive_int, default=1, metavar="K",
                   help="train K runs at once in K local processes: round-robin over the visible GPUs (several "
                        "per GPU when K exceeds them), or on CPU with the cores split between them (default 1: "
                        "one after another in this process)")
    g.add_argument("--threads-per-run", type=positive_int, default=None, metavar="N",
                   help="intra-op threads of each run (default: this process's threads divided by --workers); "
                        "equal thread counts give equal CPU rows with and without --workers")
    g.add_argument("--launcher", choices=("local", "ray"), default="local",
                   help="ray: submit each run as a task to a Ray cluster (pip install 'mixlab[ray]')")
    g.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="the Ray cluster to join (default auto: the one this node belongs to)")
    g.add_argument("--runs-per-gpu", type=positive_int, default=1, metavar="K",
                   help="Ray: each run asks for 1/K of a GPU (default 1)")
    g.add_argument("--cpus-per-run", type=positive_int, default=1, metavar="N",
                   help="Ray: CPUs each run asks for, also its intra-op threads (default 1)")


def launcher_from(args):
    from ..reproduce.launch import make_launcher
    return make_launcher(workers=args.workers, launcher=args.launcher, address=args.address,
                         runs_per_gpu=args.runs_per_gpu, cpus_per_run=args.cpus_per_run, device=args.device,
                         threads_per_run=args.threads_per_run)


def _log(message):
    print(message, file=sys.stderr, flush=True)


def run(args):
    from ..reproduce import reproduce
    report = reproduce(args.table, datasets=args.datasets, models=args.models, seeds=args.seeds,
                       epochs=args.epochs, recipe=args.recipe, out=args.out, subset=args.subset,
                       device=args.device, batch_size=args.batch_size, data_dir=args.data_dir,
                       compile=args.compile, dry_run=args.dry_run, json_path=args.json_path,
                       markdown_path=args.markdown, overrides=parse_overrides(args.overrides), plot=args.plot,
                       fid=args.fid, fid_samples=args.fid_samples, command=shlex.join(["mixlab"] + sys.argv[1:]),
                       log=_log, launcher=None if args.dry_run else launcher_from(args), trackers=args.log,
                       overwrite=args.overwrite)
    if args.dry_run:
        _print_plan(report)
        return 0
    print(report["markdown"])
    print("written: " + ", ".join(report["written"] + ([report["plot"]] if report.get("plot") else [])))
    return 1 if report["failed"] else 0


def _print_plan(report):
    runs = report["runs"]
    print(f"{report['table']} with recipe {report['recipe']!r} -> {report['out']}"
          + (f" (subset {report['subset']})" if report["subset"] else ""))
    width = max([22] + [len(r["model"]) for r in runs])
    print(f"{'dataset':<14} {'model':<{width}} {'seed':>4} {'epochs':>6}  {'status':<8} overrides")
    for r in runs:
        extra = " ".join(f"{k}={json.dumps(v)}" for k, v in r["overrides"].items())
        built = f"  [{r.get('arch') or r['model']} {json.dumps(r['model_kwargs'])}]" if r.get("model_kwargs") else ""
        print(f"{r['dataset']:<14} {r['model']:<{width}} {r['seed']:>4} {r['epochs']:>6}  {r['status']:<8} "
              f"{extra}{built}")
    for s in report["skipped"]:
        print(f"skipped {s['dataset']}: {s['reason']}")
    if report.get("rows"):   # a kind that shows its table before anything trains (segmentation)
        from ..reproduce.segmentation import format_row
        print(f"\n{'backbone':<10} {'dataset':<11} {'published':>9} {'ours':>11} {'diff':>7} {'seeds':>5}")
        for row in report["rows"]:
            print(format_row(row))
    new = [r for r in runs if r["status"] == "new"]
    partial = [r for r in runs if r["status"] == "partial"]
    print(f"{len(runs)} runs: {len(new)} to train ({sum(r['epochs'] for r in new)} epochs), "
          f"{len(partial)} to resume, {len(runs) - len(new) - len(partial)} done")
