"""`mixlab sweep`: a small grid of recipe / model overrides, run through the same launchers as `reproduce`."""
import json

from . import add_log_argument, json_object, nonnegative_int, parse_overrides, positive_int


def add_parser(sub):
    from .reproduce import add_launch_arguments
    p = sub.add_parser("sweep", help="train a small grid of recipe or model overrides (resumable, fan-out ready)",
                       description="Every point of the grid is an ordinary run directory OUT/<key=value,…>/seed<k>; "
                       "rerun the same command to resume. Example: mixlab sweep --model vit_tiny --data "
                       "fashion-mnist --grid lr=0.0005,0.001 --model-grid depth=4,6 --workers 4")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a recipe key and its values, e.g. --grid lr=0.0005,0.001 --grid label_smoothing=0,0.1")
    p.add_argument("--model-grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a model keyword and its values, e.g. --model-grid depth=4,6")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..K-1 per point (default 1)")
    p.add_argument("--recipe", default="auto")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--subset", type=positive_int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe key for every point")
    p.add_argument("--model-kwargs", type=json_object, default={}, metavar="JSON", help="model kwargs for every point")
    p.add_argument("--img-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data-workers", type=nonnegative_int, default=None, metavar="N")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--overwrite", action="store_true",
                   help="train again the points whose directory holds a run of another request (other epochs, "
                        "subset, …); without it such a point is refused before anything trains")
    p.add_argument("--json", dest="json_path", default=None, help="also write the rows here")
    add_log_argument(p)
    add_launch_arguments(p)
    p.set_defaults(func=run)


def run(args):
    import sys

    from ..reproduce.sweep import parse_grid, sweep
    from ..train import TrainConfig
    from .reproduce import launcher_from
    overrides = parse_overrides(args.set)
    if args.img_size:
        overrides["img_size"] = args.img_size
    base = TrainConfig(model=args.model, data=args.data, recipe=args.recipe, epochs=args.epochs,
                       batch_size=args.batch_size, subset=args.subset, device=args.device, data_dir=args.data_dir,
                       model_kwargs=args.model_kwargs, overrides=overrides, data_workers=args.data_workers,
                       trackers=args.log, overwrite=args.overwrite)
    grid, model_grid = parse_grid(args.grid), parse_grid(args.model_grid, "--model-grid")
    rows = sweep(base, grid, model_grid, seeds=args.seeds, out=args.out, launcher=launcher_from(args),
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    keys = list(grid) + [f"model.{k}" for k in model_grid]
    print("| " + " | ".join(keys) + " | seed | test top-1 | best (test-chosen) | params | seconds |")
    print("|" + "---|" * len(keys) + "---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [json.dumps(r[k]) if not isinstance(r[k], str) else r[k] for k in keys]
        if r["error"]:
            print("| " + " | ".join(cells) + f" | {r['seed']} | failed: {r['error']} | | | |")
            continue
        print("| " + " | ".join(cells) + f" | {r['seed']} | {r['test_top1']:.2f} | {r['best_test_top1']:.2f} | "
              f"{r['params']:,} | {r['train_seconds']:.1f} |")
    if args.json_path:
        from ..fileio import write_json
        write_json(args.json_path, {"rows": rows})
    return 1 if any(r["error"] for r in rows) else 0
