"""Activations by name, through timm's factories (`timm.layers.get_act_layer` for a module class,
`get_act_fn` for a function), so `act="gelu"` on a mixlab mixer or model means what it means on a timm model:
gelu (erf form), silu = swish, relu, identity, and the rest of timm's table. An unknown name is one line
naming the component that asked for it."""
from typing import Callable

from timm.layers import get_act_fn, get_act_layer


def _lookup(factory, name, where):
    """timm's `factory(name)`, with a missing or unknown name as one line naming `where`."""
    unknown = ValueError(f"{where}: unknown activation {name!r}; give a timm activation name (gelu, silu, relu, …)")
    if not isinstance(name, str) or not name:
        raise unknown
    try:
        return factory(name)
    except KeyError:
        raise unknown from None


def act_layer(name: str, where: str) -> type:
    """The activation module class timm calls `name`."""
    return _lookup(get_act_layer, name, where)


def act_fn(name: str, where: str) -> Callable:
    """The activation function timm calls `name` (for code that applies it to plain tensors)."""
    return _lookup(get_act_fn, name, where)
