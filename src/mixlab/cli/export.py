"""`mixlab export` (run → ONNX, verified with onnxruntime) and `mixlab predict` (images → top-k classes)."""


def add_parser(sub):
    p = sub.add_parser("export", help="export a run's model to ONNX (verified with onnxruntime) or as a Hugging "
                       "Face / timm model repo (--hub)")
    p.add_argument("--run", required=True, help="run directory (config.json + best/last.safetensors)")
    p.add_argument("--onnx", default=None, help="output .onnx file")
    p.add_argument("--hub", default=None, metavar="OUT", help="write a model repo folder: model.safetensors, timm's "
                   "config.json, README.md model card, curves.png (loads with timm and mixlab.load)")
    p.add_argument("--push", default=None, metavar="REPO_ID", help="with --hub: upload the folder to the Hugging "
                   "Face Hub (pip install 'mixlab[hub]'; token from `hf auth login` or HF_TOKEN)")
    p.add_argument("--weights", default=None, help="weights file in the run (default: last, or best for a run "
                   "trained with --validation)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (needs onnxscript)")
    p.add_argument("--fft", choices=("dft", "torch"), default="dft",
                   help="AFF's FFT in the graph: real DFT matmuls (default) or torch.fft → ONNX DFT (needs --dynamo)")
    p.add_argument("--atol", type=float, default=None, help="largest allowed |onnxruntime − PyTorch| (default 1e-4)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=run_export)

    p = sub.add_parser("predict", help="top-k classes of image files with a trained run")
    p.add_argument("--run", required=True, help="run directory (config.json + best/last.safetensors)")
    p.add_argument("images", nargs="+", help="image files or folders (searched for image files)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per image (capped at the class count)")
    p.add_argument("--weights", default=None, help="weights file in the run (default: last, or best for a run "
                   "trained with --validation)")
    p.add_argument("--out", default="predictions", metavar="DIR",
                   help="dense runs: where the pictures (mask over the image, or boxes) are written (default "
                        "predictions/)")
    p.add_argument("--min-score", type=float, default=0.3, help="detection runs: the lowest score drawn")
    p.set_defaults(func=run_predict)


def run_export(args):
    if not args.onnx and not args.hub:
        raise ValueError("export needs --onnx FILE or --hub OUT (or both)")
    if args.push and not args.hub:
        raise ValueError("--push uploads the --hub folder: give --hub OUT too")
    if args.hub:
        from ..hub import export_hub, push_hub
        out = export_hub(args.run, args.hub, weights=args.weights)
        print(f"wrote {out}: model.safetensors, config.json (timm), README.md" +
              (", curves.png" if (out / "curves.png").exists() else ""))
        if args.push:
            print(f"pushed {out} to {args.push}: {push_hub(out, args.push)}")
        if not args.onnx:
            return 0
    from ..export import DEFAULT_ATOL, DEFAULT_OPSET, export_run
    report = export_run(args.run, args.onnx, weights=args.weights, opset=DEFAULT_OPSET if args.opset is None else args.opset,
                        dynamo=args.dynamo, fft_impl=args.fft, verify=not args.no_verify,
                        atol=DEFAULT_ATOL if args.atol is None else args.atol)
    c, h, w = report.input_size
    print(f"exported {report.model} ({c}×{h}×{w}, dynamic batch) to {report.path} "
          f"[opset {report.opset}, {report.exporter} exporter, {report.export_s:.1f} s]")
    if report.max_abs_diff is not None:
        print(f"onnxruntime CPU vs PyTorch at batch {report.verify_batch}: max abs diff {report.max_abs_diff:.3g} "
              f"(≤ {report.atol:g})")
    return 0


def run_predict(args):
    import sys

    from ..checkpoint import load
    from ..predict import predict_files
    from . import printable
    if _is_dense(args.run):   # a segmentation or detection run draws its predictions
        from ..dense.predict import predict_dense
        for source, target, found in predict_dense(args.run, args.images, args.out, weights=args.weights,
                                                   min_score=args.min_score):
            print(f"{printable(source)} -> {printable(target)}: {printable(found)}")
        return 0
    model = load(args.run, weights=args.weights)
    predictions, skipped = predict_files(model, args.images, top_k=args.top_k)
    if not predictions:   # nothing to show: the one error line says why
        if not skipped:
            raise ValueError("no image files found in " + ", ".join(args.images))
        path, why = skipped[0]
        more = f" (and {len(skipped) - 1} more that could not be read either)" if len(skipped) > 1 else ""
        raise ValueError(f"no image could be read: {path}: {why}{more}")
    # class names come from folder names and paths from the user: printed escaped, never as control bytes
    for path, why in skipped:
        print(f"skipped {printable(path)}: {printable(why)}", file=sys.stderr)
    for pred in predictions:
        print(printable(pred.path))
        for rank, (name, prob) in enumerate(pred.top, 1):
            print(f"  {rank}. {printable(name):<24} {prob:.4f}")
    return 0


def _is_dense(run):
    import json
    from pathlib import Path
    path = Path(run) / "config.json"
    try:
        return isinstance(json.loads(path.read_text()).get("dense"), dict)
    except (OSError, ValueError):
        return False
