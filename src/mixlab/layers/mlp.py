from torch import nn


class FeedForward(nn.Module):
    """Linear(d→h) → act → Dropout → Linear(h→d) → Dropout: the channel MLP of ViT, Mixer, NiNformer, Activator."""

    def __init__(self, dim, hidden_dim, out_dim=None, act_layer=nn.GELU, drop=0.0, **_):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x, grid=None):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class ConvFeedForward(nn.Module):
    """Local-ViT FFN (Li et al. 2021, arXiv 2104.05707): Y = f(f(Z ⊛ W1) ⊛ W_d) ⊛ W2.

    Tokens are folded back to the (H, W) grid, then 1×1 conv (d→h) → act → k×k depth-wise conv (h) → act →
    1×1 conv (h→d); Hardswish as in the inverted-residual design the paper borrows from.
    """

    def __init__(self, dim, hidden_dim, grid, kernel_size=3, act_layer=nn.Hardswish, drop=0.0, **_):
        super().__init__()
        self.grid = tuple(grid)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act1 = act_layer()
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2, groups=hidden_dim)
        self.act2 = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x, grid=None):
        b, n, c = x.shape
        h, w = grid or self.grid
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.drop1(self.act2(self.dwconv(self.act1(self.fc1(x)))))
        x = self.drop2(self.fc2(x))
        return x.flatten(2).transpose(1, 2)


CHANNEL_MLPS = {"mlp": FeedForward, "conv_mlp": ConvFeedForward}


def create_channel_mlp(name, dim, hidden_dim, grid, drop=0.0, **kwargs):
    """Channel MLP by name ('mlp', 'conv_mlp') or None for blocks without one (Activator-GLU)."""
    if name is None or name == "none":
        return None
    if name not in CHANNEL_MLPS:
        raise ValueError(f"unknown channel MLP {name!r}; choose one of {sorted(CHANNEL_MLPS)}")
    return CHANNEL_MLPS[name](dim, hidden_dim, grid=grid, drop=drop, **kwargs)
