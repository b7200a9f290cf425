"""`mixlab models`: every registered model with its parameter count at a given input size."""


from . import nonnegative_int, positive_int


def add_parser(sub):
    p = sub.add_parser("models", help="list models with parameter counts")
    p.add_argument("pattern", nargs="?", default=None, help="shell glob, e.g. 'vit_*'")
    p.add_argument("--paper", action="store_true", help="only the faithful *_paper configs")
    p.add_argument("--img-size", type=positive_int, default=None, help="input size (default: each model's native)")
    p.add_argument("--in-chans", type=positive_int, default=None, help="input channels (default: each model's native)")
    p.add_argument("--num-classes", type=nonnegative_int, default=10,
                   help="0: pooled features, no classifier (models registered without classes, the diffusion "
                        "UNets, always get 0)")
    p.add_argument("--flops", action="store_true",
                   help="also count forward GFLOPs and GMACs per image (FLOPs = 2·MACs; papers often print MACs "
                        "as 'FLOPs'); slower: every model runs once")
    p.set_defaults(func=run)


def run(args):
    from .. import create_model, list_models, model_cfg
    names = list_models(args.pattern, paper=True if args.paper else None)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}")
    if args.flops:
        from ..bench.flops import model_flops
    cost = f" {'GFLOPs':>9} {'GMACs':>9}" if args.flops else ""
    print(f"{'model':<24} {'family':<14} {'input':>10} {'params':>12}{cost}  paper")
    for name in names:
        cfg = model_cfg(name)
        size = args.img_size or cfg["input_size"][1]
        in_chans = args.in_chans or cfg["input_size"][0]
        num_classes = 0 if cfg["num_classes"] == 0 else args.num_classes   # a denoiser has no classes
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=size)
        params = sum(p.numel() for p in model.parameters())
        if args.flops and cfg["num_classes"] != 0:   # a denoiser's forward takes a timestep too
            gflops = model_flops(model.eval(), (in_chans, size, size)).total / 1e9
            cost = f" {gflops:>9.4f} {gflops / 2:>9.4f}"
        elif args.flops:
            cost = f" {'-':>9} {'-':>9}"
        print(f"{name:<24} {cfg['family']:<14} {f'{in_chans}×{size}²':>10} {params:>12,}{cost}  "
              f"{'yes' if cfg['paper'] else ''}")
    return 0
