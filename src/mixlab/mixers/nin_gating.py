import torch.fx
from torch import nn

from ..layers.block import MetaFormerBlock
from ..layers.mlp import FeedForward
from ..layers.contract import check_token_count
from .token_mlp import TokenMlp

torch.fx.wrap("check_token_count")


class NiNGating(nn.Module):
    """NiNformer's Mixer Gating Unit (Abdullah & Aydin, arXiv 2403.02411).

    MGU(Z) = (Z W_p + b_p) ⊙ MixerBlock(Z), where MixerBlock is a full MLP-Mixer layer with its own pre-norms
    and residuals: Y = Z + TokenMLP(LN_a(Z)), M = Y + ChannelMLP(LN_b(Y)), both MLPs with hidden `hidden_dim`.
    The gate is a plain bilinear product: no sigmoid, as in the official code. Fixed token count (the inner
    token MLP has N×h weights; a class token makes it N + 1).
    """

    fixed_tokens, needs_grid, supports_class_token = True, False, True
    drop_options = ("drop",)

    def __init__(self, dim, num_tokens, grid=None, hidden_dim=512, drop=0.0, act_layer=nn.GELU):
        super().__init__()
        self.num_tokens = num_tokens
        self.grid = tuple(grid) if grid is not None else (num_tokens, 1)
        self.proj = nn.Linear(dim, dim)
        self.mixer_block = MetaFormerBlock(
            dim,
            TokenMlp(dim, num_tokens, grid, token_hidden_dim=hidden_dim, drop=drop, act_layer=act_layer),
            FeedForward(dim, hidden_dim, act_layer=act_layer, drop=drop),
        )

    def forward(self, x, grid=None):
        x = check_token_count(x, self.num_tokens, self.grid, "the NiNformer gating unit")
        return self.proj(x) * self.mixer_block(x)
