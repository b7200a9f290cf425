from torch import nn

from ..layers.mlp import FeedForward


def check_token_count(name, expected, grid, x):
    """Fixed-token mixers own N×h weights: any other token count is an error that names the image grid."""
    n = x.shape[1]
    if n != expected:
        raise ValueError(f"{name} is built for {expected} tokens (a {grid[0]}×{grid[1]} patch grid), got {n}: "
                         f"rebuild the model with the img_size of your images")


class TokenMlp(nn.Module):
    """MLP-Mixer token mixing (Tolstikhin et al. 2021): U = W₂ σ(W₁ Xᵀ)ᵀ, an MLP along the token axis.

    W₁ ∈ R^{h×N}, W₂ ∈ R^{N×h} are shared by all channels, so the token count N is fixed at construction.
    Cost O(N·h·d).
    """

    def __init__(self, dim, num_tokens, grid=None, hidden_dim=None, token_hidden_dim=None, drop=0.0,
                 act_layer=nn.GELU, **_):
        super().__init__()
        self.num_tokens = num_tokens
        self.grid = tuple(grid) if grid is not None else (num_tokens, 1)
        hidden = token_hidden_dim or hidden_dim or num_tokens * 4
        self.mlp = FeedForward(num_tokens, hidden, act_layer=act_layer, drop=drop)

    def forward(self, x, grid=None):
        check_token_count("the token-mixing MLP", self.num_tokens, self.grid, x)
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)
