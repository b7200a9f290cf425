"""Model registry: name → factory, with timm registration so `timm.create_model(name)` works too."""
import difflib
import fnmatch

_MODELS = {}   # name -> (factory, default_cfg)


def register_model(name=None, **default_cfg):
    """Decorator: `@register_model("vit_paper", family="vit", paper=True, input_size=(3, 32, 32))`."""

    def wrap(fn):
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        cfg = {"input_size": (3, 32, 32), "num_classes": 10, "paper": False, **default_cfg}
        _MODELS[key] = (fn, cfg)
        return fn

    return wrap


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


def create_model(name, num_classes=None, in_chans=None, img_size=None, pretrained=False, **overrides):
    """Build a registered model: `create_model("ninformer_paper", num_classes=100, in_chans=1, img_size=28)`.

    Unset arguments take the model's native values (its `model_cfg`). Extra keyword arguments override the
    named config (e.g. `depth=6`, `drop_path_rate=0.1`).
    """
    if pretrained:
        raise ValueError("mixlab ships no pretrained weights; train one with `mixlab train` and use mixlab.load(run)")
    fn, cfg = _lookup(name)
    c, s, _ = cfg["input_size"]
    kwargs = dict(num_classes=cfg["num_classes"] if num_classes is None else num_classes,
                  in_chans=c if in_chans is None else in_chans,
                  img_size=s if img_size is None else img_size)
    kwargs.update(overrides)
    model = fn(**kwargs)
    model.model_name = name
    # timm's resolve_model_data_config reads input_size (and mean/std, which mixlab.load fills from the run).
    input_size = (kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])
    model.default_cfg = model.pretrained_cfg = {**cfg, "architecture": name, "input_size": input_size}
    model.init_kwargs = {k: v for k, v in kwargs.items()}
    return model


def _register_with_timm():
    """Expose every mixlab model to `timm.create_model` (timm's registry is keyed by function name)."""
    try:
        from timm.models import _registry as timm_registry
        from timm.models import register_model as timm_register
    except Exception:  # timm missing or too old: mixlab's own registry still works
        return
    existing = set(timm_registry.list_models())
    for name in _MODELS:
        if name in existing:
            continue

        def entry(pretrained=False, _name=name, **kwargs):
            for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(k, None)
            return create_model(_name, pretrained=pretrained, **kwargs)

        entry.__name__ = entry.__qualname__ = name
        entry.__module__ = __name__
        timm_register(entry)
