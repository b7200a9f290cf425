"""The Adaptive Frequency Filter against float64 references written from the equations, not from torch.fft."""
import numpy as np
import pytest
import torch

from mixlab.mixers.fourier import AdaptiveFrequencyFilter




def make_filter(dim=8, groups=2, scale=0.5, seed=0, **kw):
    """A filter with O(1) weights, so the mask is far from the softshrink threshold and non-trivial."""
    torch.manual_seed(seed)
    f = AdaptiveFrequencyFilter(dim, num_groups=groups, **kw).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_(0, scale)
    return f


def dft_rows(n, rows, sign):
    """exp(sign·2πi·k·j/n) for k < rows, j < n."""
    k, j = np.arange(rows)[:, None], np.arange(n)[None, :]
    return np.exp(sign * 2j * np.pi * k * j / n)


def reference_rfft2(x):
    """Orthonormal half spectrum Σ_h Σ_w x[h, w] e^{−2πi(kh/H + lw/W)} / √(HW), l ≤ W/2, as explicit matrices."""
    h, w = x.shape[-2:]
    eh, ew = dft_rows(h, h, -1), dft_rows(w, w // 2 + 1, -1)
    return np.einsum("kh,...hw,lw->...kl", eh, x, ew) / np.sqrt(h * w)


def reference_irfft2(z, h, w):
    """Inverse of the half spectrum: a complex inverse DFT over H, then the real one over W that treats the
    missing columns as the conjugates of the present ones (the imag of the DC / Nyquist columns drops out)."""
    zh = np.einsum("hk,...kl->...hl", dft_rows(h, h, +1), z)
    weight = np.full(w // 2 + 1, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    y = np.einsum("...hl,l,lw->...hw", zh, weight, dft_rows(w, w // 2 + 1, +1))
    return y.real / np.sqrt(h * w)


def reference_mask(f, spec):
    """softshrink(W₂ act(W₁ F + b₁) + b₂) per channel group, with complex weights W = w[0] + i·w[1]; the
    activation acts on the real and imaginary parts separately."""
    w1 = f.w1.detach().numpy()
    b1 = f.b1.detach().numpy()
    w2 = f.w2.detach().numpy()
    b2 = f.b2.detach().numpy()
    relu = lambda t: np.maximum(t, 0)
    lam = f.sparsity_threshold
    shrink = lambda t: np.sign(t) * np.maximum(np.abs(t) - lam, 0)
    out = np.zeros_like(spec)
    c = f.block
    for g in range(f.num_groups):
        z = spec[:, g * c:(g + 1) * c]                                     # [B, c, H, Wf]
        o1 = np.einsum("bihw,io->bohw", z, w1[0, g] + 1j * w1[1, g]) + (b1[0, g] + 1j * b1[1, g])[:, None, None]
        o1 = relu(o1.real) + 1j * relu(o1.imag)
        o2 = np.einsum("bihw,io->bohw", o1, w2[0, g] + 1j * w2[1, g]) + (b2[0, g] + 1j * b2[1, g])[:, None, None]
        out[:, g * c:(g + 1) * c] = shrink(o2.real) + 1j * shrink(o2.imag)
    return out


@pytest.mark.parametrize("hw", [(4, 4), (5, 3), (6, 7)])
@pytest.mark.parametrize("inner_skip", [True, False])
def test_filter_equals_float64_reference(hw, inner_skip):
    f = make_filter(inner_skip=inner_skip, sparsity_threshold=0.3)
    x = torch.randn(2, 8, *hw, dtype=torch.float64)
    xn = x.numpy()
    spec = reference_rfft2(xn)
    expected = reference_irfft2(reference_mask(f, spec) * spec, *hw) + (xn if inner_skip else 0)
    np.testing.assert_allclose(f(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    # the softshrink zeroed some mask entries but not most, so both of its branches were exercised
    zeroed = np.mean(reference_mask(f, spec).real == 0)
    assert 0.05 < zeroed < 0.9


def circular_conv(x, k):
    """(x ⊛ k)[h, w] = Σ_{i,j} x[i, j] k[(h−i) mod H, (w−j) mod W], by explicit shifts."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            out += x[..., i:i + 1, j:j + 1] * torch.roll(k, shifts=(i, j), dims=(-2, -1))
    return out


@pytest.mark.parametrize("hw", [(4, 4), (5, 3)])
@pytest.mark.parametrize("impl", ["torch", "dft"])
def test_fixed_mask_is_a_circular_convolution(hw, impl):
    f = make_filter(fft_impl=impl)
    x = torch.randn(2, 8, *hw, dtype=torch.float64)
    k = torch.randn(8, *hw, dtype=torch.float64)
    # The unnormalised spectrum of k undoes the two 1/√(HW) of the orthonormal transforms: Y = x ⊛ k exactly.
    spec_k = torch.fft.rfft2(k)
    y = f.filter(x, mask_fn=lambda re, im: (spec_k.real, spec_k.imag))
    torch.testing.assert_close(y, circular_conv(x, k), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hw", [(4, 4), (5, 3), (7, 6), (1, 1), (2, 1)])
def test_dft_impl_equals_torch_fft(hw):
    f = make_filter()
    g = make_filter(fft_impl="dft")
    x = torch.randn(3, 8, *hw, dtype=torch.float64)
    torch.testing.assert_close(g(x), f(x), rtol=1e-10, atol=1e-10)
    f32, g32 = make_filter().float(), make_filter(fft_impl="dft").float()
    torch.testing.assert_close(g32(x.float()), f32(x.float()), rtol=1e-4, atol=1e-5)


def test_runs_in_float32_under_bf16_autocast():
    f = make_filter(dim=16, groups=4, scale=0.3).float()
    x = torch.randn(2, 16, 6, 6)
    reference = f(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # fp32 input: identical to the fp32 result (autocast would have run the mask matmuls in bf16)
        same = f(x)
        # bf16 input (what a preceding autocast layer hands over): computed in fp32, returned as bf16
        xb = x.bfloat16()
        yb = f(xb)
    assert same.dtype == torch.float32
    torch.testing.assert_close(same, reference, rtol=0, atol=0)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb, f(xb.float()).bfloat16(), rtol=0, atol=0)
    # and that is the fp32 answer to bf16 rounding (the input itself was rounded to bf16)
    torch.testing.assert_close(yb.float(), reference, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("hw", [(4, 4), (5, 3)])
@pytest.mark.parametrize("impl", ["torch", "dft"])
def test_gradcheck_float64(hw, impl):
    f = make_filter(fft_impl=impl)
    x = torch.randn(1, 8, *hw, dtype=torch.float64, requires_grad=True)
    params = tuple(f.parameters())

    def fn(x, w1, b1, w2, b2):
        return torch.func.functional_call(f, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        AdaptiveFrequencyFilter(10, num_groups=4)
    with pytest.raises(ValueError, match="activation"):
        AdaptiveFrequencyFilter(8, num_groups=2, act="tanhh")
