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
    p.set_defaults(func=run)


def run(args):
    from .. import create_model, list_models, model_cfg
    names = list_models(args.pattern, paper=True if args.paper else None)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}")
    print(f"{'model':<24} {'family':<14} {'input':>10} {'params':>12}  paper")
    for name in names:
        cfg = model_cfg(name)
        size = args.img_size or cfg["input_size"][1]
        in_chans = args.in_chans or cfg["input_size"][0]
        num_classes = 0 if cfg["num_classes"] == 0 else args.num_classes   # a denoiser has no classes
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=size)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<24} {cfg['family']:<14} {f'{in_chans}×{size}²':>10} {params:>12,}  "
              f"{'yes' if cfg['paper'] else ''}")
    return 0
