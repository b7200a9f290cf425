from torch import nn
from timm.layers import DropPath


class MetaFormerBlock(nn.Module):
    """x ← x + DropPath(mixer(LN₁(x))); x ← x + DropPath(mlp(LN₂(x)))  (MetaFormer, Yu et al. 2022).

    `share_norm=True` reuses LN₁ at the second site: the official NiNformer and Activator code apply one
    LayerNorm module twice. `channel_mlp=None` drops the second sub-layer (Activator "GLU only").
    """

    def __init__(self, dim, token_mixer, channel_mlp=None, norm_layer=nn.LayerNorm, share_norm=False,
                 drop_path=0.0):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.token_mixer = token_mixer
        self.share_norm = share_norm
        self.norm2 = None if (share_norm or channel_mlp is None) else norm_layer(dim)
        self.channel_mlp = channel_mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def residual(self, x, grid=None):
        """The block's total update Δ = forward(x) − x, summed from its branches (DIA rescales Δ per channel)."""
        delta = self.drop_path(self.token_mixer(self.norm1(x), grid=grid))
        if self.channel_mlp is not None:
            norm2 = self.norm1 if self.share_norm else self.norm2
            delta = delta + self.drop_path(self.channel_mlp(norm2(x + delta), grid=grid))
        return delta

    def forward(self, x, grid=None, dia=None, state=None):
        """x + Δ. With a shared DIA cell (`dia`, DIANet on a transformer): x + Δ ⊙ h_t, h_t = dia(mean_N Δ, state),
        returned with the cell's new state — inside this module, so the block's output is the recalibrated one
        for hooks and FX feature extraction by module name."""
        delta = self.residual(x, grid)
        if dia is None:
            return x + delta
        attn, state = dia(delta.mean(dim=1), state)
        return x + delta * attn.unsqueeze(1), state
