"""`mixlab report`: one self-contained HTML page for one or more runs (`mixlab.report_page`)."""
from . import nonnegative_int


def add_parser(sub):
    p = sub.add_parser("report", help="one self-contained HTML page for runs: summary table, curves, confusion "
                       "matrices, sample grids, config diff",
                       description="Write one HTML page (every image embedded, nothing to fetch) for the given run "
                       "directories: their summary.json side by side, training curves from metrics.csv, a "
                       "confusion matrix for each classifier (its weights evaluated now on its test split), the "
                       "sample grids of each diffusion run, and the config.json keys that differ between them.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by mixlab train")
    p.add_argument("--out", required=True, help="the .html file to write")
    p.add_argument("--images", type=nonnegative_int, default=2000, metavar="N",
                   help="test images for each confusion matrix, a class-stratified subset (default: %(default)s; "
                        "0: the whole test split)")
    p.add_argument("--weights", default=None, help="best | last | a file in the run (default: last, or best for a "
                   "run trained with --validation)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto, for the confusion matrices (default: cpu)")
    p.add_argument("--data-dir", default=None, help="where datasets live (default: the run's, $MIXLAB_DATA, …)")
    p.add_argument("--no-confusion", action="store_true",
                   help="evaluate nothing: no confusion matrices (no weights or dataset needed)")
    p.add_argument("--title", default=None, help="the page's title (default: the run directories)")
    p.set_defaults(func=run_report)


def run_report(args):
    from ..report_page import write_report
    result = write_report(args.runs, args.out, images=args.images, weights=args.weights, device=args.device,
                          data_dir=args.data_dir, title=args.title,
                          confusion=not args.no_confusion)
    print(f"wrote {result.path} ({result.bytes / 1024:.0f} KiB, {result.runs} run(s), {result.images} embedded "
          f"image(s)); open it in a browser")
    return 0
