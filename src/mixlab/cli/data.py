"""`mixlab data make-scenes`: write offline dense-prediction scenes as VOC, COCO and ADE20K folders."""
from . import positive_int


def add_parser(sub):
    p = sub.add_parser("data", help="dataset tools (make-scenes: offline segmentation / detection scenes)")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    m = tools.add_parser("make-scenes", help="paste Fashion-MNIST/MNIST objects onto canvases and write real "
                         "VOC, COCO and ADE20K folders (mixlab.dense.scenes)")
    m.add_argument("--out", required=True, help="folder to write VOC/, COCO/, ADEChallengeData2016/ into")
    m.add_argument("--train", type=positive_int, default=256, help="training scenes (default 256)")
    m.add_argument("--val", type=positive_int, default=64, help="validation scenes (default 64)")
    m.add_argument("--size", type=positive_int, default=64, help="canvas side in pixels (default 64)")
    m.add_argument("--classes", type=positive_int, default=4, help="object classes, 1..10 (default 4)")
    m.add_argument("--max-objects", type=positive_int, default=3, help="objects per scene, at most (default 3)")
    m.add_argument("--source", default="fashion-mnist", choices=["fashion-mnist", "mnist", "synthetic"],
                   help="glyph source; synthetic stroke glyphs when the dataset is not found")
    m.add_argument("--layouts", default="voc,coco,ade20k", help="comma-separated subset of voc,coco,ade20k")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--data-dir", default=None, help="where Fashion-MNIST/MNIST live (default: the usual places)")
    m.set_defaults(func=run_make_scenes)


def run_make_scenes(args):
    from ..dense.scenes import make_scenes
    out = make_scenes(args.out, train=args.train, val=args.val, size=args.size, num_classes=args.classes,
                      max_objects=args.max_objects, source=args.source,
                      layouts=tuple(x.strip() for x in args.layouts.split(",") if x.strip()), seed=args.seed,
                      data_dir=args.data_dir)
    folders = ", ".join(out[k] for k in ("voc", "coco", "ade20k") if k in out)
    print(f"{args.train} + {args.val} scenes of {len(out['classes'])} classes ({out['glyphs']}): {folders}")
    return 0
