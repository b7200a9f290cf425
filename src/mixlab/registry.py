"""Model registry: name → factory and default cfg. Every registered name is also a timm model
(`mixlab.timm_models`), with a timm pretrained cfg derived from the model itself."""
import contextlib
import difflib
import fnmatch
import inspect
import math
import numbers

import torch
from torch import nn

_MODELS = {}        # name -> (factory, default cfg)
_MODEL_TYPES = {}   # name -> the class its factory builds (known once it has been built)
MODEL_CLASSES = {}  # class name -> model class that `mixlab.save` may record by class (built without a name)
_PENDING_TIMM = []  # names registered while mixlab itself is importing; handed to timm when the import ends
_timm_open = False

# Input normalisation per model, by the recipe a model is trained with (`register_model(..., norm=...)` or the
# model class's `default_norm`); timm's data config (`resolve_data_config`) reads it as mean/std.
NORMALIZATION = {
    # NiNformer / Activator official train.py: Normalize(mean 0.5, std 0.5), the `paper` recipe
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # DIANet's cifar.py constants, the `dianet` recipe (CIFAR ResNets, with or without DIA)
    "dianet": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # CIFAR-10 training-set statistics: the `mixlab` recipe normalises with the dataset's own, at 3×32×32
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # ml-cvnets (AFFNet's ImageNet training): ToTensor only, pixels in [0, 1], no mean/std
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # timm's default, for models that declare nothing
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class ModelArgumentError(ValueError, TypeError):
    """A keyword a model does not take, or a value of the wrong type. A ValueError like every mixlab
    configuration error, and a TypeError like Python's own unexpected-keyword error (what timm expects)."""


def register_model(name=None, **default_cfg):
    """Decorator: `@register_model("vit_paper", family="vit", paper=True, input_size=(3, 32, 32))`.

    The cfg keys are free-form (family, paper, input_size, num_classes, source, published, …); these optional
    ones shape the model's timm pretrained cfg: `norm` (a key of NORMALIZATION) or `mean`/`std`,
    `paper_ids`. first_conv, classifier and pool_size are read off the built model.
    """

    def wrap(fn):
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        cfg = {"input_size": (3, 32, 32), "num_classes": 10, "paper": False, **default_cfg}
        if "norm" in cfg and cfg["norm"] not in NORMALIZATION:
            raise ValueError(f"model {key!r}: norm must be one of {sorted(NORMALIZATION)}, got {cfg['norm']!r}")
        _MODELS[key] = (fn, cfg)
        if _timm_open:
            _register_with_timm(key)
        else:
            _PENDING_TIMM.append(key)
        return fn

    return wrap


def register_model_class(cls):
    """Decorator: a model class that `mixlab.save` / `mixlab.load` can rebuild from its constructor kwargs
    (`model.init_kwargs`) when an instance was built directly rather than by name."""
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def open_timm_registration():
    """Register every model so far with timm, and each later one as it is registered (called once by
    `import mixlab`, after its own models are defined)."""
    global _timm_open
    _timm_open = True
    while _PENDING_TIMM:
        _register_with_timm(_PENDING_TIMM.pop(0))


def _register_with_timm(name):
    from . import timm_models
    timm_models.register(name)


def list_models(pattern=None, paper=None):
    """Registered model names, sorted; `pattern` is a shell glob ('vit_*'), `paper=True` keeps faithful configs."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if paper is not None:
        names = [n for n in names if _MODELS[n][1]["paper"] == paper]
    return names


def model_cfg(name):
    """The default cfg of a registered model (family, paper, native input size, published figures)."""
    return dict(_lookup(name)[1])


def _lookup(name):
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `mixlab models` lists them"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def create_model(name, num_classes=None, in_chans=None, img_size=None, pretrained=False, device=None, dtype=None,
                 **overrides):
    """Build a registered model: `create_model("ninformer_paper", num_classes=100, in_chans=1, img_size=28)`.

    Unset arguments take the model's native values (its `model_cfg`). Extra keyword arguments override the
    named config (e.g. `depth=6`, `drop_path_rate=0.1`); one the model does not take, or of the wrong type,
    is a one-line error listing the valid ones. `device` / `dtype` place the parameters (device="meta"
    builds without allocating).
    """
    if pretrained:
        raise ValueError("mixlab ships no pretrained weights; train one with `mixlab train` and use mixlab.load(run)")
    fn, cfg = _lookup(name)
    c, s, _ = cfg["input_size"]
    kwargs = dict(num_classes=cfg["num_classes"] if num_classes is None else num_classes,
                  in_chans=c if in_chans is None else in_chans,
                  img_size=s if img_size is None else _square_size(name, img_size))
    kwargs.update(overrides)
    _check_arguments(name, fn, kwargs)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = fn(**kwargs)
    if dtype is not None:
        model.to(dtype=dtype)
    _MODEL_TYPES.setdefault(name, type(model))
    model.model_name = name
    model.init_kwargs = dict(kwargs)
    model.pretrained_cfg = model.default_cfg = model_pretrained_cfg(model, cfg, name)
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


def _check_arguments(name, fn, kwargs):
    """Refuse, in one line, a keyword the model does not take or a number/flag of the wrong type."""
    named, open_ended = _accepted(fn)
    if open_ended and name in _MODEL_TYPES:         # the factory forwards **overrides to the model class
        cls_named, open_ended = _accepted(_MODEL_TYPES[name].__init__)
        named = {**cls_named, **named}
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


# --- timm pretrained cfg, read off a built model ------------------------------------------------------------
def model_pretrained_cfg(model, cfg=None, name=None):
    """timm's pretrained cfg for a built model: input size and normalisation as built, and first_conv,
    classifier and pool_size found in the model itself (so any registered model gets a correct one)."""
    cfg = cfg or {}
    c, s, _ = cfg.get("input_size", (3, 32, 32))
    chans, size = getattr(model, "in_chans", c), getattr(model, "img_size", s)
    mean, std = _normalization(model, cfg, chans)
    patch_embed = getattr(model, "patch_embed", None)
    out = dict(
        architecture=name,
        input_size=(chans, size, size),
        fixed_input_size=patch_embed is not None and not getattr(patch_embed, "dynamic_img_size", True),
        # small-image datasets (CIFAR, MNIST) are evaluated on whole images; ImageNet nets on the 0.875 centre
        # crop of their training code (ml-cvnets' default crop ratio), resized bilinearly as there
        interpolation="bilinear",
        crop_pct=1.0 if size <= 64 else 0.875,
        mean=mean, std=std,
        num_classes=getattr(model, "num_classes", cfg.get("num_classes")),
        pool_size=_pool_size(model, size),
        first_conv=_first_conv(model, chans),
        classifier=_classifier(model),
        description=cfg.get("source"),
        paper_ids=cfg.get("paper_ids"),
    )
    return {k: v for k, v in out.items() if v is not None or k in ("pool_size", "first_conv", "classifier")}


def _normalization(model, cfg, chans):
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    else:
        mean, std = NORMALIZATION[cfg.get("norm") or getattr(model, "default_norm", "imagenet")]
    if len(mean) != chans:   # another channel count than the recipe's: its per-channel values, averaged
        mean, std = (sum(mean) / len(mean),) * chans, (sum(std) / len(std),) * chans
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


def _pool_size(model, size):
    """Spatial size of forward_features' output at the model's input size: size / the last feature stride."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    r = info[-1]["reduction"]
    return (math.ceil(size / r), math.ceil(size / r))


def _first_conv(model, chans):
    return next((n for n, m in model.named_modules()
                 if isinstance(m, nn.Conv2d) and m.in_channels == chans), None)


def _classifier(model):
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return next((n for n, m in model.named_modules() if m is head), None) if head is not None else None


# --- checkpoints ---------------------------------------------------------------------------------------------
def model_spec(model):
    """What rebuilds `model`: {"model": name, "model_kwargs": kwargs} for a model built by name, or
    {"model": class name, "model_class": class name, "model_kwargs": constructor kwargs} for one built
    directly from a class registered with `register_model_class` (custom mixers are recorded by their
    registered name)."""
    kwargs = dict(getattr(model, "init_kwargs", None) or {})
    name = getattr(model, "model_name", None)
    if name is not None:
        return {"model": name, "model_kwargs": {**kwargs, "num_classes": getattr(model, "num_classes", None)}}
    cls = type(model)
    if MODEL_CLASSES.get(cls.__name__) is not cls or not kwargs:
        raise ValueError(f"a {cls.__name__} built directly cannot be saved: build it with mixlab.create_model(name) "
                         f"or register its class with mixlab.registry.register_model_class")
    kwargs["num_classes"] = getattr(model, "num_classes", kwargs.get("num_classes"))
    kwargs = {k: _by_name(cls.__name__, k, v) for k, v in kwargs.items()}
    return {"model": cls.__name__, "model_class": cls.__name__, "model_kwargs": kwargs}


def _by_name(owner, key, value):
    """A constructor argument as JSON: registered mixer / channel-MLP classes by name; anything else that is not
    plain data is refused in one line."""
    from .layers.mlp import CHANNEL_MLPS
    from .mixers import MIXERS
    if isinstance(value, type):
        for table in (MIXERS, CHANNEL_MLPS):
            found = next((n for n, c in table.items() if c is value), None)
            if found:
                return found
        raise ValueError(f"{owner}: cannot save {key}={value.__name__}: register it (register_mixer) and pass "
                         f"its name")
    if isinstance(value, dict):
        return {k: _by_name(owner, f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_by_name(owner, key, v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"{owner}: cannot save {key}={value!r}: only numbers, strings, lists, dicts and registered "
                     f"names can be recorded in config.json")


def build_from_config(config):
    """Rebuild the model a checkpoint's config.json describes (see `model_spec`)."""
    kwargs = dict(config.get("model_kwargs", {}))
    if "model_class" not in config:
        return create_model(config["model"], **kwargs)
    cls = MODEL_CLASSES.get(config["model_class"])
    if cls is None:
        raise ValueError(f"unknown model class {config['model_class']!r}; import the module that defines it first")
    model = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    model.pretrained_cfg = model.default_cfg = model_pretrained_cfg(model)
    return model
