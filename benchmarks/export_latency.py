"""CPU inference latency, PyTorch eager vs onnxruntime, for every *_paper model and AFFNet-T.

    python benchmarks/export_latency.py                      # all *_paper models + affnet_t, batch 1 and 32
    python benchmarks/export_latency.py --models vit_paper,affnet_t --repeats 20 --json out.json
    python benchmarks/export_latency.py --models aff_paper_size,affnet_t --fft-compare

Each model is built at its native input size (random weights: latency does not depend on them), exported
with mixlab.export (TorchScript exporter, opset 17, AFF as real DFT matmuls) and checked against PyTorch.
Latency is the median over `--repeats` timed calls after `--warmup` untimed ones; both runtimes get the same
thread count (`--threads`, default: all cores). `--fft-compare` adds, for models with AFF filters, PyTorch
eager with the DFT-matmul formulation and onnxruntime running an opset-18 graph with the ONNX DFT operator
(dynamo exporter, torch.fft path), to back the choice explained in docs/EXPORT.md.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date

import torch

import mixlab
from mixlab.bench.report import cpu_model
from mixlab.export import export_onnx, onnx_friendly, ort_session


def median_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_model(name, batches, warmup, repeats, threads, workdir, fft_compare):
    model = mixlab.create_model(name).eval()
    chans, size = model.in_chans, model.img_size
    path = os.path.join(workdir, f"{name}.onnx")
    report = export_onnx(model, path)
    session = ort_session(path, threads=threads)
    has_aff = any(type(m).__name__ == "AdaptiveFrequencyFilter" for m in model.modules())
    dft_session = None
    if fft_compare and has_aff:
        dft_path = os.path.join(workdir, f"{name}_dftop.onnx")
        export_onnx(model, dft_path, dynamo=True, fft_impl="torch")
        dft_session = ort_session(dft_path, threads=threads)
    rows = []
    for batch in batches:
        x = torch.randn(batch, chans, size, size)
        feed = {"images": x.numpy()}
        with torch.no_grad():
            row = {"model": name, "input": f"{chans}x{size}x{size}", "batch": batch,
                   "max_abs_diff": report.max_abs_diff,
                   "torch_ms": median_ms(lambda: model(x), warmup, repeats),
                   "onnxruntime_ms": median_ms(lambda: session.run(None, feed), warmup, repeats)}
            if fft_compare and has_aff:
                with onnx_friendly(model, "dft"):
                    row["torch_dft_matmul_ms"] = median_ms(lambda: model(x), warmup, repeats)
                if dft_session is not None:
                    name_in = dft_session.get_inputs()[0].name
                    row["onnxruntime_dft_op_ms"] = median_ms(lambda: dft_session.run(None, {name_in: x.numpy()}),
                                                             warmup, repeats)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: every *_paper + affnet_t)")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--fft-compare", action="store_true", help="also time AFF's alternatives (see docstring)")
    parser.add_argument("--json", default=None, help="write all rows and the environment here")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else mixlab.list_models("*_paper") + ["affnet_t"]
    names = list(dict.fromkeys(names))
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    import onnxruntime
    env = {"cpu": cpu_model(), "threads": args.threads, "date": date.today().isoformat(),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "repeats": args.repeats,
           "warmup": args.warmup, "command": "python " + " ".join([sys.argv[0]] + (argv or sys.argv[1:]))}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows += bench_model(name, batches, args.warmup, args.repeats, args.threads, workdir, args.fft_compare)
    extra = [k for k in ("torch_dft_matmul_ms", "onnxruntime_dft_op_ms") if any(k in r for r in rows)]
    print(f"{env['cpu']}, {env['threads']} threads, torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
          f"{env['date']}; median of {args.repeats} after {args.warmup} warm-up")
    print("| model | input | batch | PyTorch eager ms | onnxruntime ms | speed-up | max abs diff |"
          + "".join(f" {k} |" for k in extra))
    print("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra))
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['torch_ms']:.2f} | {r['onnxruntime_ms']:.2f} | "
              f"{r['torch_ms'] / r['onnxruntime_ms']:.2f}× | {r['max_abs_diff']:.1e} |"
              + "".join(f" {r[k]:.2f} |" if k in r else " – |" for k in extra))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
