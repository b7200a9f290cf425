"""FLOP counting: `torch.utils.flop_counter.FlopCounterMode` plus formulas for the ops it counts as zero.

Convention: FLOPs = 2·MACs for matrix products and convolutions (the FlopCounterMode convention; bias
adds, normalisation, activations, softmax, element-wise gates and products are *not* counted). Added here:

* FFT (`aten._fft_r2c`, `_fft_c2r`, `_fft_c2c`), which FlopCounterMode counts as 0: a real transform of
  N = ∏ n_i points (over all transformed axes together) costs 2.5·N·log₂N real FLOPs, a complex one
  5·N·log₂N (the FFTW "mflops" convention, exact for radix-2 sizes), times the number of transforms in the
  batch. Backward passes dispatch FFTs too and are counted the same way.
* Fused CPU attention (`aten._scaled_dot_product_flash_attention_for_cpu` and its backward), counted as 0
  by FlopCounterMode: the same formulas torch uses for the CUDA kernels, forward 2·(2·N²·d_h) per head
  (QKᵀ and AV), backward 5 such products (the scores are recomputed). When SDPA falls back to the math path
  it dispatches bmm, which the stock counter already counts; either way attention is counted once.
* Fused LSTM/GRU/RNN kernels (`aten.mkldnn_rnn_layer` on CPU, `aten._cudnn_rnn` on CUDA), counted as 0:
  2·T·B·Σ rows·cols over the input-to-hidden and hidden-to-hidden weight matrices; backward = 2× forward.
  mixlab's DIA cell is built from nn.Linear and needs none of this; a torch nn.LSTM does.
* Convolution backward, which FlopCounterMode over-counts for grouped/depth-wise convolutions (it transposes
  the weight as if groups were 1, so a depth-wise 3×3 backward on C channels counts ~C/2 times the forward).
  Here each requested gradient (input, weight) costs exactly the forward's MACs:
  2·(output elements, or input elements for a transposed conv)·(C_in/groups)·k_h·k_w per gradient.
"""
import math
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _prod(xs):
    out = 1
    for x in xs:
        out *= int(x)
    return out


def fft_flops(shape, dims, complex_input=False):
    """FLOPs of an FFT over `dims` of a signal of `shape` (the real side for r2c/c2r): batch·c·N·log₂N,
    c = 2.5 for a real transform, 5 for a complex one."""
    dims = [d % len(shape) for d in dims]
    n = _prod(shape[d] for d in dims)
    if n <= 1:
        return 0
    batch = _prod(shape) // n
    return int(round(batch * (5.0 if complex_input else 2.5) * n * math.log2(n)))


def _fft_r2c(x_shape, dim, *args, out_shape=None, **kwargs):
    return fft_flops(x_shape, dim)


def _fft_c2r(x_shape, dim, *args, out_shape=None, **kwargs):
    return fft_flops(out_shape, dim)


def _fft_c2c(x_shape, dim, *args, out_shape=None, **kwargs):
    return fft_flops(x_shape, dim, complex_input=True)


def _sdpa_cpu(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def _sdpa_cpu_backward(grad_out_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out_shape, q_shape, k_shape, v_shape)


def rnn_flops(input_shape, weight_shapes):
    """2·(T·B)·Σ rows·cols over the 2-D weight matrices of one RNN call (biases are not counted)."""
    tokens = _prod(input_shape[:-1])
    return 2 * tokens * sum(int(s[0]) * int(s[1]) for s in weight_shapes if s is not None and len(s) == 2)


def _mkldnn_rnn_layer(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs):
    return rnn_flops(input_shape, [w_ih, w_hh])


def _mkldnn_rnn_layer_backward(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs):
    return 2 * rnn_flops(input_shape, [w_ih, w_hh])


def _cudnn_rnn(input_shape, weights, *args, out_shape=None, **kwargs):
    # Every layer and direction sees the same T·B steps, so summing over all weight matrices is exact.
    return rnn_flops(input_shape, weights)


def _cudnn_rnn_backward(input_shape, weights, *args, out_shape=None, **kwargs):
    return 2 * rnn_flops(input_shape, weights)


def conv_backward_flops(grad_out_shape, x_shape, w_shape, transposed, output_mask):
    """grad_input and grad_weight each cost the forward's 2·MACs; the bias gradient is a sum (not counted)."""
    macs = _prod(x_shape if transposed else grad_out_shape) * _prod(w_shape[1:])
    return 2 * macs * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                   _output_padding, _groups, output_mask, out_shape=None, **kwargs):
    return conv_backward_flops(grad_out_shape, x_shape, w_shape, transposed, output_mask)


def custom_mapping():
    """The formulas above keyed by op packet; ops missing from the installed torch are skipped."""
    wanted = {
        "_fft_r2c": _fft_r2c, "_fft_c2r": _fft_c2r, "_fft_c2c": _fft_c2c,
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward,
        "mkldnn_rnn_layer": _mkldnn_rnn_layer, "mkldnn_rnn_layer_backward": _mkldnn_rnn_layer_backward,
        "_cudnn_rnn": _cudnn_rnn, "_cudnn_rnn_backward": _cudnn_rnn_backward,
        "convolution_backward": _conv_backward,
    }
    mapping = {}
    for name, fn in wanted.items():
        try:
            mapping[getattr(aten, name)] = fn
        except (AttributeError, RuntimeError):
            continue
    return mapping


# Module names (last path component) → breakdown category; the outermost match on a path wins, so a
# Mixer block nested inside NiNformer's gating unit is counted as mixer, not as channel MLP.
CATEGORIES = {
    "token_mixer": "mixer", "attn": "mixer", "mlp_tokens": "mixer", "aff": "mixer", "filter": "mixer",
    "channel_mlp": "channel_mlp", "mlp": "channel_mlp", "mlp_channels": "channel_mlp", "ffn": "channel_mlp",
    "patch_embed": "embed", "stem": "embed",
    "head": "head", "classifier": "head",
    "dia": "dia", "dia_cell": "dia",
}
BREAKDOWN_KEYS = ("embed", "mixer", "channel_mlp", "dia", "head", "other")


def categorize(flop_counts, total):
    """Collapse FlopCounterMode's per-module counts (parents include children) into BREAKDOWN_KEYS."""
    out = dict.fromkeys(BREAKDOWN_KEYS, 0)
    for path, ops in flop_counts.items():
        parts = path.split(".")[1:]           # drop the root (the model's class name) and 'Global'
        if not parts:
            continue
        first = next((i for i, p in enumerate(parts) if p in CATEGORIES), None)
        if first is not None and first == len(parts) - 1:
            out[CATEGORIES[parts[first]]] += sum(ops.values())
    out["other"] = total - sum(out.values())
    return out


@dataclass
class FlopReport:
    """FLOPs of one call (for the whole batch passed in): total, per aten op, per breakdown category."""
    total: int
    by_op: dict = field(default_factory=dict)
    breakdown: dict = field(default_factory=dict)
    by_module: dict = field(default_factory=dict)


def count_flops(fn, *args):
    """Run `fn(*args)` under FlopCounterMode with mixlab's extra formulas; returns a FlopReport."""
    with FlopCounterMode(display=False, custom_mapping=custom_mapping()) as counter:
        fn(*args)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()
    by_op = {str(k): int(v) for k, v in counts.get("Global", {}).items()}
    by_module = {k: int(sum(v.values())) for k, v in counts.items() if k != "Global"}
    return FlopReport(total, by_op, categorize(counts, total), by_module)


def model_flops(model, input_size, device="cpu", batch_size=2, backward=False):
    """FLOPs of one image through `model` (forward, or forward + backward of a cross-entropy loss).

    Counted at `batch_size` in fp32 and divided by it, so the figure is per image (every counted op is
    linear in the batch; 2, not 1, so BatchNorm can run in train mode). The model's train/eval mode is
    restored afterwards.
    """
    was_training = model.training
    model.train(backward)
    x = torch.randn(batch_size, *input_size, device=device)

    def step(inp):
        out = model(inp)
        if backward:
            target = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
            torch.nn.functional.cross_entropy(out, target).backward()
        return out

    try:
        if backward:
            report = count_flops(step, x)
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                report = count_flops(step, x)
    finally:
        model.train(was_training)
    per = lambda v: v // batch_size if isinstance(v, int) else v
    return FlopReport(per(report.total), {k: per(v) for k, v in report.by_op.items()},
                      {k: per(v) for k, v in report.breakdown.items()},
                      {k: per(v) for k, v in report.by_module.items()})
