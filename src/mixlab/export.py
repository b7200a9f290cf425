"""ONNX export of any mixlab model, verified against PyTorch with onnxruntime on CPU.

    export_onnx(model, "m.onnx")      # → ExportReport(path, opset, max_abs_diff, ...)
    export_run("runs/x", "m.onnx")    # the same for a run directory (config.json + safetensors)

The graph has a dynamic batch axis ("batch") on input `images` [B, C, H, W] and output `logits`. The default
exporter is the TorchScript-based one (`dynamo=False`), which needs only the `onnx` package. AFF's FFT is
exported through its real DFT-as-matmul formulation (`fft_impl="dft"`, see docs/EXPORT.md for why it is
preferred over the opset-17 DFT operator); the switch is made for the export only and undone afterwards, and
the ONNX outputs are compared with the model running its ordinary `torch.fft` path. The run's data config
(mean, std, class names, input size) is stored in the ONNX metadata, so the file is self-describing too.
"""
import contextlib
import importlib
import inspect
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .fileio import TEMP_MARK, check_writable, clean_temp_files, first_line
from .mixers.fourier import AdaptiveFrequencyFilter

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4


def opset_range(dynamo=False):
    """(lowest, highest) ONNX opset the chosen exporter of this torch accepts (the dynamo exporter writes 18 or
    more: a lower request is raised to 18, see export_onnx)."""
    from torch.onnx import _constants
    low = getattr(_constants, "ONNX_MIN_OPSET", 7)
    high = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17)
    return (low, getattr(_constants, "ONNX_MAX_OPSET", high)) if dynamo else (low, high)


class ExportError(RuntimeError):
    """A model could not be exported, or its ONNX graph disagrees with PyTorch beyond the tolerance."""


def require(module):
    """Import an optional dependency of the `export` extra, or fail in one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"{module} is not installed; ONNX export needs it: pip install 'mixlab[export]' "
                           f"(or pip install onnx onnxruntime)") from None


@contextlib.contextmanager
def onnx_friendly(model, fft_impl="dft"):
    """Temporarily set every AFF filter in `model` to `fft_impl` ("dft": rfft2/irfft2 as real matmuls)."""
    filters = [m for m in model.modules() if isinstance(m, AdaptiveFrequencyFilter)]
    before = [m.fft_impl for m in filters]
    for m in filters:
        m.fft_impl = fft_impl
    try:
        yield model
    finally:
        for m, impl in zip(filters, before):
            m.fft_impl = impl


def model_input_size(model):
    """[C, H, W] the model takes: the run's recorded input size, else its `in_chans`/`img_size`."""
    size = (getattr(model, "data_config", None) or {}).get("input_size")
    if size:
        return [int(v) for v in size]
    img = getattr(model, "img_size", None)
    chans = getattr(model, "in_chans", None)
    if img is None or chans is None:
        raise ValueError("cannot tell the model's input size: pass input_size=(C, H, W)")
    h, w = (img, img) if isinstance(img, int) else img
    return [int(chans), int(h), int(w)]


@dataclass
class ExportReport:
    path: str
    model: str
    input_size: list
    opset: int
    exporter: str
    export_s: float
    max_abs_diff: float = None
    verify_batch: int = None
    atol: float = DEFAULT_ATOL
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return self.max_abs_diff is None or self.max_abs_diff <= self.atol


def _why(err):
    """The first informative line of an exporter error (TorchScript errors append whole graphs)."""
    return first_line(err, limit=300)


@contextlib.contextmanager
def _silenced_native_output():
    """Send fd 1/2 to a scratch file: on failure the TorchScript exporter dumps the whole IR graph to stderr
    from C++ (its log switch is always on in torch 2.x), which would bury the one-line reason we report."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _export(model, path, example, opset, dynamo):
    names = dict(input_names=["images"], output_names=["logits"])
    kwargs = dict(opset_version=opset, do_constant_folding=True, **names)
    if dynamo:
        kwargs.pop("do_constant_folding")
        kwargs.update(dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), dynamo=True,
                      verbose=False)
    else:
        kwargs["dynamic_axes"] = {"images": {0: "batch"}, "logits": {0: "batch"}}
        if "dynamo" in inspect.signature(torch.onnx.export).parameters:   # torch < 2.5 has no such flag
            kwargs["dynamo"] = False
    with warnings.catch_warnings(), _silenced_native_output():
        # Tracer warnings about Python-side shape checks are expected: those checks hold for any batch size.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), **kwargs)


def export_onnx(model, path, input_size=None, opset=DEFAULT_OPSET, dynamo=False, fft_impl="dft",
                verify=True, verify_batch=4, atol=DEFAULT_ATOL, metadata=None):
    """Export `model` (eval mode, fp32, CPU) to ONNX at `path` and check it with onnxruntime.

    fft_impl: how AFF filters are written in the graph — "dft" (real matmuls, any opset, the default) or
        "torch" (`torch.fft`, which only the dynamo exporter can lower, to the opset-17+ DFT operator).
    verify: run `verify_batch` random images through onnxruntime (CPU) and PyTorch; the report carries the
        max abs difference and ExportError is raised when it exceeds `atol` (`path` is then left as it was
        and the graph is kept beside it as `<name>.rejected.onnx` for inspection).
    Raises ExportError, naming the operator or reason, when the model cannot be exported.
    """
    onnx = require("onnx")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: the output file should end in .onnx")
    if fft_impl not in ("dft", "torch"):
        raise ValueError(f"fft_impl must be 'dft' or 'torch', got {fft_impl!r}")
    low, high = opset_range(dynamo)
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise ValueError(f"--opset must be an integer from {low} to {high} for the "
                         f"{'dynamo' if dynamo else 'TorchScript'} exporter, got {opset!r}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not math.isfinite(atol) or atol < 0:
        raise ValueError(f"--atol must be a finite tolerance ≥ 0 (the largest allowed |onnxruntime − PyTorch|), "
                         f"got {atol!r}")
    if dynamo:
        opset = max(opset, 18)   # the dynamo exporter implements opset 18+; lower targets go through a lossy converter
    name = getattr(model, "model_name", type(model).__name__)
    input_size = list(input_size) if input_size is not None else model_input_size(model)
    model = model.float().cpu().eval()
    check_writable(path)
    # what killed exports of this target left (their process is gone; a live one's temp file is kept)
    clean_temp_files(path.parent, path.name, keep_live=True)
    # Export into a temp file beside the target and rename it only once it is complete and verified: a killed
    # or failed export never leaves a truncated file over a good one. The name carries our PID (see above).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}{os.getpid()}-", suffix=".onnx")
    os.close(fd)
    try:
        report = _export_verified(onnx, model, name, Path(tmp), input_size, opset, dynamo, fft_impl, verify,
                                  verify_batch, atol, metadata)
        if not report.ok:
            rejected = path.with_name(f"{path.stem}.rejected.onnx")
            os.replace(tmp, rejected)
            raise ExportError(f"{name}: onnxruntime differs from PyTorch by {report.max_abs_diff:.3g} "
                              f"(> {atol:g}) at batch {verify_batch}; {path} was not written, the graph is kept "
                              f"for inspection as {rejected}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report.path = str(path)
    return report


def _export_verified(onnx, model, name, path, input_size, opset, dynamo, fft_impl, verify, verify_batch, atol,
                     metadata):
    example = torch.randn(1, *input_size)
    start = time.perf_counter()
    try:
        with onnx_friendly(model, fft_impl), torch.no_grad():
            _export(model, path, example, opset, dynamo)
    except Exception as e:
        hint = ""
        if "fft" in str(e).lower() and not dynamo:
            hint = " (torch.fft has no TorchScript-exporter lowering: use fft_impl='dft' or dynamo=True)"
        raise ExportError(f"cannot export {name} to ONNX (opset {opset}): {_why(e)}{hint}") from e
    export_s = time.perf_counter() - start
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    meta = {"mixlab_model": name, "input_size": json.dumps(input_size), **(metadata or {})}
    data_config = getattr(model, "data_config", None) or {}
    meta.update({k: json.dumps(v) for k, v in data_config.items() if v is not None and k != "input_size"})
    onnx.helper.set_model_props(graph, {k: str(v) for k, v in meta.items()})
    onnx.save(graph, str(path))
    report = ExportReport(str(path), name, input_size, opset, "dynamo" if dynamo else "torchscript", export_s,
                          atol=atol)
    if verify:
        report.verify_batch = verify_batch
        report.max_abs_diff = max_abs_diff(model, path, batch=verify_batch, input_size=input_size)
    return report


def ort_session(path, threads=None):
    """An onnxruntime CPU session for `path` (`threads` caps intra-op threads; None: onnxruntime's default)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(model, path, batch=4, input_size=None, seed=0):
    """max |onnxruntime(x) − model(x)| over a random batch, with the model in its ordinary (torch.fft) mode."""
    input_size = list(input_size) if input_size is not None else model_input_size(model)
    x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(seed))
    session = ort_session(path)
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model.eval()(x)
    return float((torch.from_numpy(out) - ref).abs().max())


def export_run(run_dir, path, weights=None, **kwargs):
    """Export a run directory's model (config.json + safetensors, read with `mixlab.load`) to ONNX."""
    from .checkpoint import load
    if (Path(run_dir) / "config.json").is_file() and "dense" in json.loads((Path(run_dir) / "config.json").read_text()):
        from .dense.model import load_dense   # a segmentation run exports x -> logits [B, K, H, W]
        model = load_dense(run_dir, weights)
        if model.task != "segmentation":
            raise ValueError(f"{run_dir}: ONNX export is for classifiers and segmentation runs; a detector's "
                             f"post-processing (NMS over a variable number of boxes) is not exported")
        return export_onnx(model, path, input_size=model.data_config["input_size"], **kwargs)
    model = load(run_dir, weights=weights)
    return export_onnx(model, path, input_size=model.data_config.get("input_size"), **kwargs)
