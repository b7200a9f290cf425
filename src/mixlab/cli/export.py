"""`mixlab export` (run → ONNX, verified with onnxruntime) and `mixlab predict` (images → top-k classes)."""


def add_parser(sub):
    p = sub.add_parser("export", help="export a run's model to ONNX and verify it with onnxruntime (CPU)")
    p.add_argument("--run", required=True, help="run directory (config.json + best/last.safetensors)")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--weights", default=None, help="weights file in the run (default: best, else last)")
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
    p.add_argument("--weights", default=None, help="weights file in the run (default: best, else last)")
    p.set_defaults(func=run_predict)


def run_export(args):
    from ..export import DEFAULT_ATOL, DEFAULT_OPSET, export_run
    report = export_run(args.run, args.onnx, weights=args.weights, opset=args.opset or DEFAULT_OPSET,
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
    model = load(args.run, weights=args.weights)
    predictions, skipped = predict_files(model, args.images, top_k=args.top_k)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for pred in predictions:
        print(pred.path)
        for rank, (name, prob) in enumerate(pred.top, 1):
            print(f"  {rank}. {name:<24} {prob:.4f}")
    if not predictions:
        print("no image could be read", file=sys.stderr)
        return 1
    return 0
