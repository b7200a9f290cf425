"""Model registry: name → factory, model class and default cfg, and the checks on the arguments a model is
built with. Every registered name is also a timm model: `register_model` hands it to `mixlab.timm_models`, whose
pretrained cfg comes from the cfg declared here and the model class's static description (`timm_cfg`), so no
model is built to register it."""
import contextlib
import difflib
import fnmatch
import inspect
import numbers
from typing import Any, Callable

import torch
from torch import nn

from . import timm_models
from .data.normalization import check_norm

_MODELS: dict[str, tuple[Callable[..., nn.Module], dict, type]] = {}   # name -> (factory, default cfg, class)
MODEL_CLASSES: dict[str, type] = {}  # class name -> model class `mixlab.save` may record by class (no name)


class ModelArgumentError(ValueError, TypeError):
    """A keyword a model does not take, or a value of the wrong type. A ValueError like every mixlab
    configuration error, and a TypeError like Python's own unexpected-keyword error (what timm expects)."""


def register_model(name: str | None = None, *, model_class: type | None = None, model_kwargs: dict | None = None,
                   **default_cfg: Any) -> Callable:
    """Decorator: `@register_model("vit_paper", model_class=IsotropicNet, model_kwargs=PAPER, family="vit",
    paper=True, input_size=(3, 32, 32))`.

    `model_class` is the class the factory builds (else the factory's return annotation); `model_kwargs` the
    named config's constructor arguments, from which the class's `timm_cfg` describes the model to timm
    (first_conv, classifier, output stride, fixed input size) without building it. The cfg keys are free-form
    (family, paper, input_size, num_classes, source, published, …); these optional ones shape the timm
    pretrained cfg: `norm` (a key of `mixlab.data.normalization.NORMALIZATION`) or `mean`/`std`, `paper_ids`.
    """

    def wrap(fn):
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        cls = model_class or _returned_class(fn)
        if cls is None:
            raise ValueError(f"model {key!r}: say which class the factory builds (register_model(..., "
                             f"model_class=...)) or annotate its return type")
        cfg = {"input_size": (3, 32, 32), "num_classes": 10, "paper": False, **default_cfg}
        if "norm" in cfg:
            check_norm(f"model {key!r}", cfg["norm"])
        _MODELS[key] = (fn, cfg, cls)
        timm_models.register(key, cfg, static_cfg(cls, model_kwargs or {}),
                             lambda **kwargs: create_model(key, **kwargs))
        return fn

    return wrap


def _returned_class(fn):
    annotation = inspect.signature(fn).return_annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, nn.Module) else None


def static_cfg(cls: type, model_kwargs: dict) -> dict:
    """What the model class says of itself without being built: first_conv, classifier, norm, and from its
    `timm_cfg(**model_kwargs)` the output stride and whether the input size is fixed."""
    described = cls.timm_cfg(**model_kwargs) if hasattr(cls, "timm_cfg") else {}
    return {"first_conv": getattr(cls, "first_conv", None), "classifier": getattr(cls, "classifier", None),
            "norm": getattr(cls, "default_norm", "imagenet"), "reduction": None, "fixed_input_size": False,
            **described}


def register_model_class(cls: type) -> type:
    """Decorator: a model class that `mixlab.save` / `mixlab.load` can rebuild from its constructor kwargs
    (`model.init_kwargs`) when an instance was built directly rather than by name."""
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def list_models(pattern: str | None = None, paper: bool | None = None) -> list[str]:
    """Registered model names, sorted; `pattern` is a shell glob ('vit_*'), `paper=True` keeps faithful configs."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if paper is not None:
        names = [n for n in names if _MODELS[n][1]["paper"] == paper]
    return names


def model_cfg(name: str) -> dict:
    """The default cfg of a registered model (family, paper, native input size, published figures)."""
    return dict(_lookup(name)[1])


def model_arguments(name: str) -> set[str]:
    """The keyword arguments a registered model takes (its factory's, and its class's when the factory
    forwards **overrides): how a caller asks whether a backbone has an option such as `output_stride`."""
    fn, _, cls = _lookup(name)
    return set(_model_accepted(fn, cls)[0])


def _lookup(name):
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `mixlab models` lists them"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 img_size: int | tuple[int, int] | None = None, pretrained: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 **overrides: Any) -> nn.Module:
    """Build a registered model: `create_model("ninformer_paper", num_classes=100, in_chans=1, img_size=28)`.

    Unset arguments take the model's native values (its `model_cfg`). Extra keyword arguments override the
    named config (e.g. `depth=6`, `drop_path_rate=0.1`); one the model does not take, or of the wrong type,
    is a one-line error listing the valid ones. `device` / `dtype` place the parameters (device="meta"
    builds without allocating).
    """
    if pretrained:
        raise ValueError("mixlab ships no pretrained weights; train one with `mixlab train` and use mixlab.load(run)")
    fn, cfg, cls = _lookup(name)
    c, s, _ = cfg["input_size"]
    kwargs = dict(num_classes=cfg["num_classes"] if num_classes is None else num_classes,
                  in_chans=c if in_chans is None else in_chans,
                  img_size=s if img_size is None else _square_size(name, img_size))
    kwargs.update(overrides)
    _check_arguments(name, fn, cls, kwargs)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = fn(**kwargs)
    if not isinstance(model, cls):
        raise TypeError(f"model {name!r} is registered as a {cls.__name__} but its factory built a "
                        f"{type(model).__name__}")
    if dtype is not None:
        model.to(dtype=dtype)
    model.model_name = name
    model.init_kwargs = dict(kwargs)
    model.pretrained_cfg = model.default_cfg = timm_models.model_pretrained_cfg(model, cfg, name)
    return model


def _square_size(name, img_size):
    """An int, or timm's (H, W) with H = W."""
    if isinstance(img_size, (tuple, list)):
        if len(img_size) != 2 or img_size[0] != img_size[1]:
            raise ModelArgumentError(f"{name} takes square images: img_size must be an int or (S, S), got {img_size!r}")
        return img_size[0]
    return img_size


def _accepted(fn):
    """(named keyword parameters with their defaults, whether it also takes **kwargs) of a callable."""
    params = inspect.signature(fn).parameters
    named = {n: p.default for n, p in params.items()
             if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _model_accepted(fn, cls):
    """`_accepted` of a model factory, with its class's keywords when the factory forwards **overrides."""
    named, open_ended = _accepted(fn)
    if open_ended:
        cls_named, open_ended = _accepted(cls.__init__)
        named = {**cls_named, **named}
    return named, open_ended


def _check_arguments(name, fn, cls, kwargs):
    """Refuse, in one line, a keyword the model does not take or a number/flag of the wrong type."""
    named, open_ended = _model_accepted(fn, cls)
    if not open_ended:
        unknown = sorted(set(kwargs) - set(named))
        if unknown:
            raise ModelArgumentError(f"{name} takes no argument {', '.join(map(repr, unknown))}; "
                                     f"its arguments are: {', '.join(sorted(named))}")
    for key, value in kwargs.items():
        default = named.get(key, inspect.Parameter.empty)
        expected = _expected_type(default)
        if expected is not None and not _is_a(value, expected):
            raise ModelArgumentError(f"{name}: {key} must be {expected}, got {value!r} ({type(value).__name__})")


def _expected_type(default):
    if isinstance(default, bool):
        return "a bool"
    if isinstance(default, numbers.Integral):
        return "an integer"
    if isinstance(default, numbers.Real):
        return "a number"
    return None


def _is_a(value, expected):
    if expected == "a bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral if expected == "an integer" else numbers.Real)
