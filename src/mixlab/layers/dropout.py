"""Dropout with a cheaper mask on CPUs, for the recipes that are not a paper's (`Recipe.fast_dropout`).

    y = x · k / (1 − p̂),   k = [u ≥ t] ∈ {0, 1},   u ~ U{−2¹⁵, …, 2¹⁵ − 1} i.i.d.,   t = round(p · 2¹⁶) − 2¹⁵

so P(k = 0) = p̂ = round(p · 2¹⁶) / 2¹⁶ (|p̂ − p| ≤ 2⁻¹⁷) and E[y] = x exactly. The 16-bit uniforms are the
int16 halves of `torch.randint` int64 words: one draw of the generator gives four mask entries, where
`nn.Dropout`'s `bernoulli_` draws one double per entry (on this project's CPU 40 % of `mixer_paper`'s training
step went to it; docs/BENCHMARKS.md "Dropout masks"). The mask is a pure function of torch's CPU generator,
which every run's trainer state saves, so resume stays bit-exact; the stream differs from `nn.Dropout`'s, which
is why the paper recipes keep `nn.Dropout`. On other devices `F.dropout` runs unchanged (a fused kernel).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

_LEVELS = 1 << 16
_OFFSET = 1 << 15


def fast_dropout_mask(shape: torch.Size, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The keep mask k of the module docstring (bool, on the CPU) and nothing else: P(k = 1) = 1 − p̂."""
    n = 1
    for s in shape:
        n *= int(s)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, generator=generator)
    return words.view(torch.int16)[:n].view(shape) >= int(round(p * _LEVELS)) - _OFFSET


def kept_fraction(p: float) -> float:
    """1 − p̂: the exact probability that `fast_dropout_mask` keeps an entry."""
    return 1.0 - round(p * _LEVELS) / _LEVELS


class FastDropout(nn.Dropout):
    """`nn.Dropout` with `fast_dropout_mask` on CPU tensors (module docstring); the same `p`, no state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p >= 1.0:
            return F.dropout(x, self.p, True, self.inplace)
        keep = fast_dropout_mask(x.shape, self.p)
        return torch.where(keep, x * (1.0 / kept_fraction(self.p)), x.new_zeros(()))


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every `nn.Dropout` of `model` (exactly that class) by a `FastDropout` of the same p, in place.
    Returns how many were replaced. State dicts are unchanged (dropout holds no tensors)."""
    count = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                count += 1
    return count
