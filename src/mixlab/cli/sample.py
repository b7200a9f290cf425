"""`mixlab sample`: a grid of images drawn from a trained diffusion run (mixlab.diffusion.runs.sample_run)."""
from . import nonnegative_int, positive_int


def add_parser(sub):
    p = sub.add_parser("sample", help="draw images from a trained diffusion run into a grid PNG",
                       description="Ancestral DDPM sampling from a diffusion run's weights (EMA when the recipe "
                       "has one), at the run's precision; the grid is a pure function of the weights, --seed, "
                       "--steps, --batch-size and the device type.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory of a unet_* / se_unet_* / dia_unet_* run")
    p.add_argument("--n", type=positive_int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--steps", type=positive_int, default=None,
                   help="reverse steps (default: the recipe's sample_steps, all T when unset)")
    p.add_argument("--out", default=None, metavar="PNG",
                   help="output file (default DIR/samples/sample-seed<S>[-steps<K>].png)")
    p.add_argument("--weights", default=None,
                   help="last | best | a file name in the run directory (default: last, the final weights, as the "
                        "dia-diffusion table scores them; best for a run trained with --validation)")
    p.add_argument("--nrow", type=positive_int, default=None, help="images per grid row (default ⌈√n⌉)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.set_defaults(func=run)


def run(args):
    from ..diffusion.runs import sample_run
    from ..rundir import weights_label
    r = sample_run(args.run, n=args.n, seed=args.seed, steps=args.steps, out=args.out, weights=args.weights,
                   device=args.device, batch_size=args.batch_size, nrow=args.nrow)
    print(f"wrote {r['n']} samples of {r['model']} ({weights_label(args.run, r['weights'])}, {r['steps']} reverse steps, seed {r['seed']}, "
          f"{r['precision']}) to {r['path']}")
    return 0
