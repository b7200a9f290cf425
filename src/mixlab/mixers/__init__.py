"""Token mixers: `Mixer(dim, num_tokens, grid, **cfg)`, `forward(x [B, N, C], grid=None) -> [B, N, C]`."""
from .attention import Attention
from .fourier import AdaptiveFrequencyFilter, AFFMixer
from .glu_gating import GluGating
from .nin_gating import NiNGating
from .simple import IdentityMixer, PoolingMixer
from .token_mlp import TokenMlp

MIXERS = {
    "attention": Attention,
    "token_mlp": TokenMlp,
    "nin_gating": NiNGating,
    "glu_gating": GluGating,
    "aff": AFFMixer,
    "identity": IdentityMixer,
    "pooling": PoolingMixer,
}
# Mixers whose weights depend on the token count: a model that uses one has a fixed image size.
FIXED_TOKEN_MIXERS = {"token_mlp", "nin_gating"}


def register_mixer(name, fixed_tokens=False):
    """Decorator that makes a token mixer class available by name to every isotropic model:

        @register_mixer("my_mixer")
        class MyMixer(nn.Module):
            def __init__(self, dim, num_tokens, grid, **cfg): ...
            def forward(self, x, grid=None): ...   # [B, N, C] -> [B, N, C]

    `fixed_tokens=True` declares that its weights depend on the token count (the image size is then fixed).
    """

    def wrap(cls):
        if name in MIXERS:
            raise ValueError(f"token mixer {name!r} is already registered")
        MIXERS[name] = cls
        if fixed_tokens:
            FIXED_TOKEN_MIXERS.add(name)
        return cls

    return wrap


def create_mixer(name, dim, num_tokens, grid, **cfg):
    """A token mixer by registered name (or a mixer class itself) with the standard constructor contract."""
    if isinstance(name, type):
        return name(dim, num_tokens=num_tokens, grid=grid, **cfg)
    if name not in MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; choose one of {sorted(MIXERS)}")
    return MIXERS[name](dim, num_tokens=num_tokens, grid=grid, **cfg)


__all__ = ["MIXERS", "FIXED_TOKEN_MIXERS", "create_mixer", "register_mixer", "Attention", "TokenMlp", "NiNGating", "GluGating",
           "AFFMixer", "AdaptiveFrequencyFilter", "IdentityMixer", "PoolingMixer"]
