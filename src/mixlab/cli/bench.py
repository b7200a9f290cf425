"""`mixlab bench`: params, FLOPs, throughput, peak memory per model (with timm peers), or a token-scaling sweep."""
import sys


def _csv_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text):
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise ValueError(f"--sizes takes comma-separated integers, got {text!r}") from None


def add_parser(sub):
    p = sub.add_parser("bench", help="parameters, FLOPs, throughput and memory; --sweep for token scaling",
                       description="Benchmark models (params, FLOPs fwd and fwd+bwd, inference/training "
                       "throughput, peak memory; ratios to timm ViT/Mixer peers) or, with --sweep, how "
                       "time, memory and FLOPs grow with the token count.")
    p.add_argument("--models", default="vit_paper,ninformer_paper",
                   help="comma-separated registered model names (default: %(default)s)")
    p.add_argument("--sweep", action="store_true", help="token-scaling sweep over --families and --sizes")
    p.add_argument("--families", default="attention,token_mlp,nin_gating,glu_gating,aff",
                   help="sweep families (default: %(default)s)")
    p.add_argument("--sizes", default="32,64,128", help="sweep image sizes, patch 4 (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 on CPU, 256 on CUDA")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="time torch.compile'd models (FLOPs stay eager)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default: 2 CPU, 10 CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, median reported (default: 3 CPU, 20 CUDA)")
    p.add_argument("--img-size", type=int, default=32,
                   help="input size (default: %(default)s, the CIFAR size of the paper models; 0: each model's native)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads while measuring (default: 1)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step figures")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    p.add_argument("--no-peer", action="store_true", help="skip the timm ViT / MlpMixer peers")
    p.add_argument("--json", default=None, help="write rows + environment to this JSON file")
    p.add_argument("--csv", default=None, help="write rows to this CSV file")
    p.add_argument("--plot-dir", default=None, help="write PNG plots here")
    p.add_argument("--accuracy", default=None,
                   help="reproduce results (JSON/CSV with model and test_top1) for an accuracy-vs-FLOPs plot")
    p.add_argument("--accuracy-dataset", default=None,
                   help="the dataset whose accuracies to plot when --accuracy holds several")
    p.set_defaults(func=run)


def run(args):
    from ..bench import BenchConfig, run_bench, run_sweep
    from ..bench import report
    from ..fileio import check_writable, ensure_folder
    for path in (args.json, args.csv):   # refuse a bad output path before minutes of measuring, not after
        if path:
            check_writable(path)
    if args.plot_dir:
        check_writable(ensure_folder(args.plot_dir) / "bench.png")
    cfg = BenchConfig(device=args.device, batch_size=args.batch_size, precision=args.precision,
                      channels_last=args.channels_last, compile=args.compile, warmup=args.warmup,
                      repeats=args.repeats, img_size=args.img_size or None, threads=args.threads,
                      train=not args.no_train,
                      memory=not args.no_memory)
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)
    resolved = cfg.resolved()   # checks the device first: the environment below asks CUDA for its name
    meta = report.environment(args.device)
    meta["config"] = {k: v for k, v in resolved.__dict__.items()}
    extra = {}
    if args.sweep:
        sizes = _int_list(args.sizes) if args.sizes is not None else [32, 64, 128]
        if args.batch_size is None and args.device == "cpu":
            cfg.batch_size = 2      # the sweep's large sizes need a small CPU batch to finish in minutes
        rows, exps = run_sweep(_csv_list(args.families), sizes, cfg, progress=progress)
        meta["config"]["batch_size"] = cfg.resolved().batch_size
        extra["exponents"] = exps
        print(report.format_table(rows))
        print()
        print(report.format_exponents(exps))
    else:
        rows = run_bench(_csv_list(args.models), cfg, peers=not args.no_peer, progress=progress)
        print(report.format_table(rows))
    threads = meta["config"]["threads"]
    per_core = (f", {threads} intra-op thread{'s' if threads != 1 else ''} (--threads; 1 by default: a per-core "
                f"cost that stays comparable on a shared machine)") if meta["device"] == "cpu" and threads else ""
    print(f"\n{meta['device_name']}{per_core}, torch {meta['torch']}, {meta['date']}; FLOPs = 2·MACs, per image "
          f"(FFT 2.5·N·log2N per real transform); ratios are mixlab / timm peer")
    if args.json:
        report.write_json(args.json, meta, rows, **extra)
        print(f"wrote {args.json}")
    if args.csv:
        report.write_csv(args.csv, rows)
        print(f"wrote {args.csv}")
    if args.plot_dir:
        paths = report.plot_sweep(rows, args.plot_dir) if args.sweep else [report.plot_bench(rows, args.plot_dir)]
        if args.accuracy:
            accuracy = report.load_accuracy(args.accuracy, args.accuracy_dataset)
            paths.append(report.plot_accuracy_vs_flops(rows, accuracy, f"{args.plot_dir}/accuracy_vs_flops.png"))
        print("wrote " + ", ".join(paths))
    elif args.accuracy:
        raise ValueError("--accuracy draws a plot: give --plot-dir too")
    return 0
