"""`mixlab analyze`: the cross-layer correlation of channel attention (SE, DIA) and DIA's parameter savings."""


def add_parser(sub):
    p = sub.add_parser("analyze", help="attention analyses: cross-layer correlation, attention parameter budget",
                       description="Analyses behind DIA (arXiv 2210.16101): how strongly the channel attention "
                       "of different blocks correlates, and how many attention parameters DIA saves.")
    verbs = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    c = verbs.add_parser("attention-correlation",
                         help="layer × layer Pearson correlation of every block's channel attention",
                         description="Record every block's channel-attention vector (SE gate or DIA-LSTM output) "
                         "on test images and write, per stage, the layer × layer Pearson correlation over the "
                         "channels averaged over the images: correlation.json, correlation_<stage>.csv and "
                         "correlation.png, plus the mean off-diagonal value.")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory (config.json + best/last.safetensors) of an se_*, dia_* "
                        "or dia_vit_* model")
    source.add_argument("--model", help="a registered model name, freshly initialised (the untrained baseline); "
                        "needs --data")
    c.add_argument("--data", default=None, help="dataset for the images (default with --run: the run's)")
    c.add_argument("--data-dir", default=None, help="folder holding the datasets (default: MIXLAB_DATA and the "
                   "usual places)")
    c.add_argument("--images", type=int, default=1000,
                   help="test images, a class-stratified subset (default: %(default)s; 0: the whole test split)")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    c.add_argument("--batch-size", type=int, default=250, help="images per forward pass (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="initialisation seed with --model (default: %(default)s)")
    c.add_argument("--set", dest="model_kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor override with --model, e.g. --set depth=20 (repeatable)")
    c.set_defaults(func=run_correlation)

    a = verbs.add_parser("attention-params",
                         help="SE in every block vs one DIA-LSTM per stage: attention parameters against depth",
                         description="Count the attention-module parameters of the DIANet backbones (ResNet, "
                         "PreResNet, WRN, ResNeXt) at several depths with SE (r=16) in every block, one DIA-LSTM "
                         "(r=4 and r=16) per stage and one shared SE per stage; write attention_params.csv/.md/"
                         ".json and attention_params.png and say which configurations reach the journal's 94.4 %.")
    a.add_argument("--out", default="docs/dia-param-savings", help="output directory (default: %(default)s)")
    a.set_defaults(func=run_params)


def run_correlation(args):
    from ..analyze import (attention_correlation, load_run_for_analysis, untrained_for_analysis,
                           write_correlation_report)
    from . import parse_overrides

    if args.images < 0:
        raise ValueError(f"--images must be ≥ 0 (0: the whole test split), got {args.images}")
    images = args.images or None
    from ..device import pick_device
    pick_device(args.device)   # a device that is not there: one line now, not the driver's after loading
    kwargs = parse_overrides(args.model_kwargs)
    if args.run:
        if kwargs:
            raise ValueError("--set applies to --model only; a run is rebuilt from its config.json")
        model, dataset, mean, std = load_run_for_analysis(args.run, images, data=args.data, data_dir=args.data_dir)
        title = f"{model.model_name}, trained ({args.run})"
    else:
        if not args.data:
            raise ValueError("--model needs --data to take images from, e.g. --data cifar10-jpeg")
        model, dataset, mean, std = untrained_for_analysis(args.model, args.data, images, data_dir=args.data_dir,
                                                           seed=args.seed, **kwargs)
        title = f"{args.model}, untrained (seed {args.seed})"
    result = attention_correlation(model, dataset.images, mean, std, batch_size=args.batch_size,
                                   device=args.device)
    paths = write_correlation_report(result, args.out, f"{title} on {dataset.name} test")
    print(f"{title}: {result['images']} {dataset.name} test images")
    for stage, s in result["stages"].items():
        undefined = f", {s['undefined']} undefined entries" if s["undefined"] else ""
        print(f"  {stage:<8} {s['blocks']:>3} blocks × {s['channels']:>4} channels: mean off-diagonal Pearson r "
              f"{s['mean_off_diagonal']:.4f}{undefined}")
    print(f"  mean over stages: {result['mean_off_diagonal']:.4f}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def run_params(args):
    from ..analyze import attention_params_table, reaching_claim, write_attention_params_report
    from ..analyze.params import CLAIM

    rows = attention_params_table()
    paths = write_attention_params_report(rows, args.out)
    print(f"{'backbone':<24} {'depth':>5} {'SE r=16':>11} {'DIA r=4':>9} {'saving':>8} {'DIA r=16':>9} "
          f"{'saving':>8} {'1 SE/stage':>10} {'saving':>8}")
    for r in rows:
        print(f"{r['backbone']:<24} {r['depth']:>5} {r['se16_params']:>11,} {r['dia4_params']:>9,} "
              f"{r['saving_dia4_vs_se16']:>7.1f}% {r['dia16_params']:>9,} {r['saving_dia16_vs_se16']:>7.1f}% "
              f"{r['shared_se16_params']:>10,} {r['saving_shared_se16_vs_se16']:>7.1f}%")
    hits = reaching_claim(rows)
    print(f"reaching the journal's {CLAIM} %: " + ("; ".join(f"{b}-{d} with {what} ({s:.2f} %)"
                                                             for b, d, what, s in hits) or "none"))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
