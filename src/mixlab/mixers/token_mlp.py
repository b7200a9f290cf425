import torch.fx
from torch import nn

from ..layers.mlp import FeedForward
from ..layers.contract import check_token_count

torch.fx.wrap("check_token_count")


class TokenMlp(nn.Module):
    """MLP-Mixer token mixing (Tolstikhin et al. 2021): U = W₂ σ(W₁ Xᵀ)ᵀ, an MLP along the token axis.

    W₁ ∈ R^{h×N}, W₂ ∈ R^{N×h} are shared by all channels, so the token count N is fixed at construction.
    A class token is one more row of W₁ and column of W₂ (N + 1 tokens mixed alike). Cost O(N·h·d).
    """

    fixed_tokens, needs_grid, supports_class_token = True, False, True
    drop_options = ("drop",)

    def __init__(self, dim, num_tokens, grid=None, token_hidden_dim=None, drop=0.0, act_layer=nn.GELU):
        super().__init__()
        self.num_tokens = num_tokens
        self.grid = tuple(grid) if grid is not None else (num_tokens, 1)
        hidden = token_hidden_dim or num_tokens * 4
        self.mlp = FeedForward(num_tokens, hidden, act_layer=act_layer, drop=drop)

    def forward(self, x, grid=None):
        x = check_token_count(x, self.num_tokens, self.grid, "the token-mixing MLP")
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)
