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


def create_mixer(name, dim, num_tokens, grid, **cfg):
    if name not in MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; choose one of {sorted(MIXERS)}")
    return MIXERS[name](dim, num_tokens=num_tokens, grid=grid, **cfg)


__all__ = ["MIXERS", "FIXED_TOKEN_MIXERS", "create_mixer", "Attention", "TokenMlp", "NiNGating", "GluGating",
           "AFFMixer", "AdaptiveFrequencyFilter", "IdentityMixer", "PoolingMixer"]
