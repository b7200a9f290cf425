import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..layers.act import act_fn
from ..layers.contract import image_to_tokens, tokens_to_image



def _dft_matrices(n, rows, device, dtype):
    """cos/sin(2π·k·j/n) for k < rows, j < n; the product k·j is reduced mod n first to keep the angles exact."""
    k = torch.arange(rows, device=device, dtype=torch.float64)[:, None]
    j = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * torch.remainder(k * j, n) / n
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


def rfft2_real(x, impl="torch"):
    """Orthonormal 2-D real FFT over the last two axes, returned as (real, imag) of shape [..., H, W//2+1].

    impl="dft" writes the transform as four real matrix products (Z = C_H x C_W − … ), which ONNX exports
    and runs with plain MatMul; impl="torch" calls `torch.fft.rfft2`. Both are exact up to rounding.
    """
    h, w = x.shape[-2:]
    if impl == "torch":
        spec = torch.fft.rfft2(x, norm="ortho")
        return spec.real, spec.imag
    wf = w // 2 + 1
    cw, sw = _dft_matrices(w, wf, x.device, x.dtype)          # [wf, W]
    ch, sh = _dft_matrices(h, h, x.device, x.dtype)           # [H, H]
    a, b = x @ cw.T, -(x @ sw.T)                             # along W: a + ib
    scale = 1.0 / math.sqrt(h * w)
    real = (ch @ a + sh @ b) * scale                         # along H: Σ_h (a + ib)(cos − i sin)
    imag = (ch @ b - sh @ a) * scale
    return real, imag


def irfft2_real(real, imag, size, impl="torch"):
    """Inverse of `rfft2_real` (orthonormal) to a real [..., H, W] signal; imag of the DC/Nyquist columns is
    ignored, as Hermitian symmetry requires."""
    h, w = size
    if impl == "torch":
        return torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho")
    wf = w // 2 + 1
    ch, sh = _dft_matrices(h, h, real.device, real.dtype)
    cw, sw = _dft_matrices(w, wf, real.device, real.dtype)   # [wf, W]
    xr = ch.T @ real - sh.T @ imag                            # along H: Σ_k (zr + i zi)(cos + i sin)
    xi = ch.T @ imag + sh.T @ real
    weight = torch.full((wf, 1), 2.0, device=real.device, dtype=real.dtype)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    out = xr @ (weight * cw) - xi @ (weight * sw)            # c2r along W
    return out / math.sqrt(h * w)


def _complex_linear(re, im, w, b):
    """(re + i·im)(w_r + i·w_i) + (b_r + i·b_i), block-diagonal over the K groups: [..., K, c] → [..., K, h].

    einsum keeps the weights un-broadcast; a batched matmul would copy them to every frequency bin and keep the
    copies for backward (10× the training memory of the whole model, measured in bench).
    """
    mm = lambda t, wk: torch.einsum("...kc,kch->...kh", t, wk)
    return mm(re, w[0]) - mm(im, w[1]) + b[0], mm(im, w[0]) + mm(re, w[1]) + b[1]


def adaptive_mask(re, im, w1, b1, w2, b2, act, threshold):
    """The instance-adaptive mask M = softshrink(W₂ act(W₁ F + b₁) + b₂) for a spectrum F = re + i·im
    [B, C, H, Wf]; the weights are [2, K, c, h] (real, imaginary) per channel group, act acts on the real and
    imaginary parts separately."""
    b, c, h, wf = re.shape
    groups, block = w1.shape[1], w1.shape[2]
    to_groups = lambda t: t.permute(0, 2, 3, 1).reshape(b, h, wf, groups, block)
    re, im = _complex_linear(to_groups(re), to_groups(im), w1, b1)
    fn = act_fn(act, "AFF")
    re, im = _complex_linear(fn(re), fn(im), w2, b2)
    from_groups = lambda t: t.reshape(b, h, wf, c).permute(0, 3, 1, 2)
    return F.softshrink(from_groups(re), threshold), F.softshrink(from_groups(im), threshold)


def frequency_filter(x, mask_fn, fft_impl="torch"):
    """Y = irfft2(M ⊙ rfft2(X)) with M = mask_fn(re, im) of the spectrum."""
    h, w = x.shape[-2:]
    re, im = rfft2_real(x, fft_impl)
    m_re, m_im = mask_fn(re, im)
    return irfft2_real(m_re * re - m_im * im, m_re * im + m_im * re, (h, w), fft_impl)


@torch.fx.wrap
def adaptive_frequency_filter(x, w1, b1, w2, b2, act="relu", threshold=0.01, inner_skip=True, fft_impl="torch"):
    """AFF on [B, C, H, W], computed in float32 (float64 stays float64) with autocast off, half-precision
    weights included, and returned in the input's dtype.

    One torch.fx leaf: symbolic tracing records a single call here (the autocast switch and the dtype test are
    Python control flow that FX cannot trace), and the call runs this code on real tensors.
    """
    dtype = x.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype   # a half model too
    device_type = x.device.type if torch.amp.is_autocast_available(x.device.type) else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        x = x.to(compute)
        w1, b1, w2, b2 = (t.to(compute) for t in (w1, b1, w2, b2))
        y = frequency_filter(x, lambda re, im: adaptive_mask(re, im, w1, b1, w2, b2, act, threshold), fft_impl)
        if inner_skip:
            y = y + x
    return y.to(dtype)


class AdaptiveFrequencyFilter(nn.Module):
    """Adaptive Frequency Filter (AFF; Huang et al., ICCV 2023, arXiv 2307.14008), on [B, C, H, W].

        F = rfft2(X) (orthonormal),  M = softshrink_λ(W₂ act(W₁ F + b₁) + b₂),  Y = irfft2(M ⊙ F) (+ X)

    W₁, W₂ are complex, block-diagonal over `num_groups` channel groups (a grouped 1×1 conv in the frequency
    domain, written as real and imaginary weights), so the mask M is inferred from the instance's own
    spectrum. By the convolution theorem Y is X circularly convolved with a content-dependent kernel as large
    as the feature map, at O(N log N). The whole filter runs in float32 with autocast off, as the official
    code does (half-precision FFTs lose the small coefficients the softshrink keeps).
    """

    def __init__(self, dim, num_groups=8, hidden_factor=1, act="relu", sparsity_threshold=0.01,
                 inner_skip=True, fft_impl="torch"):
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"AFF: dim {dim} is not divisible by num_groups {num_groups}")
        act_fn(act, "AFF")   # an unknown name is refused here, before any weight is made
        self.dim, self.num_groups = dim, num_groups
        self.block = dim // num_groups
        hidden = self.block * hidden_factor
        self.w1 = nn.Parameter(0.02 * torch.randn(2, num_groups, self.block, hidden))
        self.b1 = nn.Parameter(0.02 * torch.randn(2, num_groups, hidden))
        self.w2 = nn.Parameter(0.02 * torch.randn(2, num_groups, hidden, self.block))
        self.b2 = nn.Parameter(0.02 * torch.randn(2, num_groups, self.block))
        self.act = act
        self.sparsity_threshold = sparsity_threshold
        self.inner_skip = inner_skip
        self.fft_impl = fft_impl

    def mask(self, re, im):
        """The instance-adaptive mask M (real, imag) for a spectrum given as real/imag [B, C, H, Wf]."""
        return adaptive_mask(re, im, self.w1, self.b1, self.w2, self.b2, self.act, self.sparsity_threshold)

    def filter(self, x, mask_fn=None):
        """Y = irfft2(M ⊙ rfft2(X)) with M = mask_fn(spectrum) (default: this module's adaptive mask)."""
        return frequency_filter(x, mask_fn or self.mask, self.fft_impl)

    def forward(self, x):
        return adaptive_frequency_filter(x, self.w1, self.b1, self.w2, self.b2, self.act, self.sparsity_threshold,
                                         self.inner_skip, self.fft_impl)

    def extra_repr(self):
        return (f"dim={self.dim}, num_groups={self.num_groups}, act={self.act}, "
                f"sparsity_threshold={self.sparsity_threshold}, inner_skip={self.inner_skip}, fft_impl={self.fft_impl}")


class AFFMixer(nn.Module):
    """AFF as a token mixer for the isotropic backbone: tokens [B, N, C] are folded to the (H, W) grid,
    filtered by `AdaptiveFrequencyFilter`, and unfolded. The block's own residual replaces AFF's inner skip,
    so `inner_skip` defaults to False here (AFFNet keeps it, as the official code does). It filters the patch
    grid, which a class token is not part of: refused."""

    fixed_tokens, needs_grid, supports_class_token = False, True, False
    drop_options = ()

    def __init__(self, dim, num_tokens=None, grid=None, num_groups=8, hidden_factor=1, act="relu",
                 sparsity_threshold=0.01, inner_skip=False):
        super().__init__()
        self.grid = tuple(grid) if grid is not None else None
        self.filter = AdaptiveFrequencyFilter(dim, num_groups, hidden_factor, act, sparsity_threshold, inner_skip)

    def forward(self, x, grid=None):
        return image_to_tokens(self.filter(tokens_to_image(x, self.grid if grid is None else grid)))
