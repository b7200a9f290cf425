import torch
from torch import nn

from .contract import MLP_CONTRACT, check_options, image_to_tokens, tokens_to_image


class FeedForward(nn.Module):
    """Linear(d→h) → act → Dropout → Linear(h→d) → Dropout: the channel MLP of ViT, Mixer, NiNformer, Activator.
    Per token, so any token count and class tokens."""

    needs_grid, supports_class_token = False, True
    drop_options = ("drop",)

    def __init__(self, dim, hidden_dim, num_tokens=None, grid=None, out_dim=None, act_layer=nn.GELU, drop=0.0):
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
    1×1 conv (h→d); Hardswish as in the inverted-residual design the paper borrows from. Prefix (class)
    tokens are not on the grid: they bypass the FFN, as in Local-ViT (its update for them is zero, so the
    block's residual leaves them untouched).
    """

    needs_grid, supports_class_token = True, True
    drop_options = ("drop",)

    def __init__(self, dim, hidden_dim, num_tokens=None, grid=None, kernel_size=3, act_layer=nn.Hardswish,
                 drop=0.0):
        super().__init__()
        if grid is None:
            raise ValueError("the conv FFN needs the patch grid (H, W)")
        self.grid = tuple(grid)
        self.num_prefix_tokens = 0 if num_tokens is None else num_tokens - self.grid[0] * self.grid[1]
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act1 = act_layer()
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2, groups=hidden_dim)
        self.act2 = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x, grid=None):
        p = self.num_prefix_tokens
        prefix, x = (x[:, :p], x[:, p:]) if p else (None, x)
        x = tokens_to_image(x, self.grid if grid is None else grid)
        x = self.drop1(self.act2(self.dwconv(self.act1(self.fc1(x)))))
        x = image_to_tokens(self.drop2(self.fc2(x)))
        return x if prefix is None else torch.cat([torch.zeros_like(prefix), x], dim=1)


CHANNEL_MLPS = {"mlp": FeedForward, "conv_mlp": ConvFeedForward}


def channel_mlp_class(name):
    """The channel-MLP class for a name ('mlp', 'conv_mlp'), a class itself, or None (no second sub-layer)."""
    if name is None or isinstance(name, type):
        return name
    if name == "none":
        return None
    if name not in CHANNEL_MLPS:
        raise ValueError(f"unknown channel MLP {name!r}; choose one of {sorted(CHANNEL_MLPS)} or None")
    return CHANNEL_MLPS[name]


def create_channel_mlp(name, dim, hidden_dim, num_tokens=None, grid=None, **options):
    """Channel MLP by name ('mlp', 'conv_mlp') or class, with the contract `Mlp(dim, hidden_dim, num_tokens, grid,
    **own_options)`; None for blocks without one (Activator-GLU). Unknown options are a one-line error."""
    cls = channel_mlp_class(name)
    if cls is None:
        return None
    check_options("channel MLP", cls.__name__ if isinstance(name, type) else name, cls, options, MLP_CONTRACT)
    return cls(dim, hidden_dim, num_tokens=num_tokens, grid=grid, **options)
