"""Token mixers: `Mixer(dim, num_tokens, grid, **own_options)`, `forward(x [B, N, C], grid=None) -> [B, N, C]`,
with their capabilities as class attributes (see `mixlab.layers.contract`)."""
from typing import Any, Callable

from torch import nn

from ..fileio import first_line
from ..layers.contract import MIXER_CONTRACT, capabilities, check_options
from .attention import Attention
from .fourier import AdaptiveFrequencyFilter, AFFMixer
from .glu_gating import GluGating
from .nin_gating import NiNGating
from .simple import DepthwiseConvMixer, IdentityMixer, PoolingMixer, RandomMixer
from .token_mlp import TokenMlp

MIXERS = {
    "attention": Attention,
    "token_mlp": TokenMlp,
    "nin_gating": NiNGating,
    "glu_gating": GluGating,
    "aff": AFFMixer,
    "identity": IdentityMixer,
    "pooling": PoolingMixer,
    "random": RandomMixer,
    "dwconv": DepthwiseConvMixer,
}
# mixers read from `path/to/file.py:Class` (mixer_class), each file imported once per process
_FILE_MIXERS = {}


def register_mixer(name: str) -> Callable[[type], type]:
    """Decorator that makes a token mixer class available by name to every isotropic model:

        @register_mixer("my_mixer")
        class MyMixer(nn.Module):
            needs_grid = True                  # capabilities: fixed_tokens, needs_grid, supports_class_token
            def __init__(self, dim, num_tokens, grid, my_option=1): ...
            def forward(self, x, grid=None): ...   # [B, N, C] -> [B, N, C]

    The capabilities are read from the class (`fixed_tokens = True`: weights that depend on the token count
    fix the image size).
    """

    def wrap(cls: type) -> type:
        if name in MIXERS:
            raise ValueError(f"token mixer {name!r} is already registered")
        MIXERS[name] = cls
        return cls

    return wrap


def is_file_mixer(name):
    """Whether `name` names a mixer class in a Python file: `path/to/file.py:Class`."""
    return isinstance(name, str) and ".py:" in name


def load_file_mixer(spec):
    """The class `Class` of `path/to/file.py:Class`, imported from that file and checked against the mixer
    contract (`check_mixer_contract`); a one-line error when the file, the class or the contract fails. The
    spec is what run directories record, so a resume or another process finds the same class."""
    import importlib.util
    import hashlib
    from pathlib import Path
    from ..layers.contract import check_mixer_contract
    path_text, _, cls_name = spec.rpartition(":")
    path = Path(path_text).expanduser().resolve()
    key = (str(path), cls_name)
    if key in _FILE_MIXERS:
        return _FILE_MIXERS[key]
    if not path.is_file():
        raise ValueError(f"mixer file {path_text} does not exist (give path/to/file.py:ClassName)")
    module_name = f"mixlab_user_mixer_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    try:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    except Exception as e:   # noqa: BLE001 (any error in a user's file is one line, not our traceback)
        raise ValueError(f"mixer file {path_text} failed to import: {type(e).__name__}: {first_line(e, '')}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise ValueError(f"{path_text} has no class {cls_name!r}; it defines: {', '.join(found) or 'no classes'}")
    check_mixer_contract(cls, spec)
    _FILE_MIXERS[key] = cls
    return cls


def mixer_class(name: str | type) -> type:
    """The class of a registered mixer name, of a `path/to/file.py:Class` spec, or the class itself; a one-line
    error for unknown names."""
    if isinstance(name, type):
        return name
    if is_file_mixer(name):
        return load_file_mixer(name)
    if name not in MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; choose one of {sorted(MIXERS)}, or import the module that "
                         f"registers it (register_mixer) first")
    return MIXERS[name]


def mixer_name(cls: type) -> str | None:
    """The registered name of a mixer class, or None."""
    return next((n for n, c in MIXERS.items() if c is cls), None)


def create_mixer(name: str | type, dim: int, num_tokens: int | None, grid: tuple[int, int] | None,
                 **options: Any) -> nn.Module:
    """A token mixer by registered name (or a mixer class itself) with the standard constructor contract; an
    option the mixer does not take is a one-line error that lists the ones it does."""
    cls = mixer_class(name)
    check_options("token mixer", name if isinstance(name, str) else cls.__name__, cls, options, MIXER_CONTRACT)
    return cls(dim, num_tokens=num_tokens, grid=grid, **options)


__all__ = ["MIXERS", "create_mixer", "register_mixer", "mixer_class", "mixer_name", "capabilities", "Attention",
           "TokenMlp", "NiNGating", "GluGating", "AFFMixer", "AdaptiveFrequencyFilter", "IdentityMixer", "PoolingMixer",
           "RandomMixer", "DepthwiseConvMixer", "is_file_mixer", "load_file_mixer"]
