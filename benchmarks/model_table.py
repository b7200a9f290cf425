"""Print the README's model table: parameters and forward FLOPs per image at a given input size.

    python benchmarks/model_table.py --in-chans 3 --img-size 32 --num-classes 10
"""
import argparse

import mixlab
from mixlab.bench import model_flops


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-chans", type=int, default=3)
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--pattern", default=None)
    args = ap.parse_args()
    print(f"| model | family | paper config | params | GFLOPs fwd ({args.in_chans}×{args.img_size}², per image) |")
    print("|---|---|:---:|---:|---:|")
    for name in mixlab.list_models(args.pattern):
        cfg = mixlab.model_cfg(name)
        model = mixlab.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans,
                                    img_size=args.img_size)
        params = sum(p.numel() for p in model.parameters())
        flops = model_flops(model, (args.in_chans, args.img_size, args.img_size)).total
        print(f"| `{name}` | {cfg['family']} | {'✓' if cfg['paper'] else ''} | {params / 1e6:.2f}M | "
              f"{flops / 1e9:.3f} |")


if __name__ == "__main__":
    main()
