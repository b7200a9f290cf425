"""Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv 1709.01507): the per-block channel attention that DIA
shares across blocks instead.

    s = σ(W₂ ReLU(W₁ GAP(x) + b₁) + b₂),   out = x ⊙ s,   W₁ ∈ R^{C/r × C}, W₂ ∈ R^{C × C/r}

2C²/r + C/r + C parameters a block. timm's `SEModule` computes exactly this; its gate σ is the submodule
`.gate`, whose output s ∈ (0, 1)^C is the block's attention vector.
"""
from timm.layers import SEModule


def squeeze_excite(channels, reduction=16):
    """SE with the hidden width C // r exactly, as in the SE paper and osmr/imgclsmob. (timm's default rounds
    the width up to a multiple of 8, e.g. 64 / 16 → 8, which would change every published parameter count.)"""
    if reduction < 1 or channels // reduction < 1:
        raise ValueError(f"SE reduction {reduction} leaves no hidden unit for {channels} channels; "
                         f"use a reduction between 1 and {channels}")
    return SEModule(channels, rd_channels=channels // reduction)
