"""Token mixers: `Mixer(dim, num_tokens, grid, **own_options)`, `forward(x [B, N, C], grid=None) -> [B, N, C]`,
with their capabilities as class attributes (see `mixlab.layers.contract`)."""
from ..layers.contract import MIXER_CONTRACT, capabilities, check_options
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


def register_mixer(name, fixed_tokens=None):
    """Decorator that makes a token mixer class available by name to every isotropic model:

        @register_mixer("my_mixer")
        class MyMixer(nn.Module):
            needs_grid = True                  # capabilities: fixed_tokens, needs_grid, supports_class_token
            def __init__(self, dim, num_tokens, grid, my_option=1): ...
            def forward(self, x, grid=None): ...   # [B, N, C] -> [B, N, C]

    The capabilities are read from the class. `fixed_tokens=True` here is the older spelling of the class
    attribute `fixed_tokens = True` (weights that depend on the token count fix the image size).
    """

    def wrap(cls):
        if name in MIXERS:
            raise ValueError(f"token mixer {name!r} is already registered")
        if fixed_tokens is not None:
            cls.fixed_tokens = bool(fixed_tokens)
        MIXERS[name] = cls
        return cls

    return wrap


def mixer_class(name):
    """The class of a registered mixer name (or the class itself); a one-line error for unknown names."""
    if isinstance(name, type):
        return name
    if name not in MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; choose one of {sorted(MIXERS)}, or import the module that "
                         f"registers it (register_mixer) first")
    return MIXERS[name]


def mixer_name(cls):
    """The registered name of a mixer class, or None."""
    return next((n for n, c in MIXERS.items() if c is cls), None)


def create_mixer(name, dim, num_tokens, grid, **options):
    """A token mixer by registered name (or a mixer class itself) with the standard constructor contract; an
    option the mixer does not take is a one-line error that lists the ones it does."""
    cls = mixer_class(name)
    check_options("token mixer", name if isinstance(name, str) else cls.__name__, cls, options, MIXER_CONTRACT)
    return cls(dim, num_tokens=num_tokens, grid=grid, **options)


__all__ = ["MIXERS", "create_mixer", "register_mixer", "mixer_class", "mixer_name", "capabilities", "Attention",
           "TokenMlp", "NiNGating", "GluGating", "AFFMixer", "AdaptiveFrequencyFilter", "IdentityMixer", "PoolingMixer"]
