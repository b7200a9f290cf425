"""Every mixlab model as a timm model, registered the way timm's own model files do: a `default_cfgs` table of
pretrained cfgs (no weights) and one `@register_model` entrypoint per name that builds through
`timm.models.build_model_with_cfg`. So `timm.create_model(name, features_only=True, out_indices=...)`,
`get_pretrained_cfg(name)`, `list_models(name_matches_cfg=True)` and `resolve_data_config` all work.

A name's pretrained cfg is derived, without building the model, from the cfg it is registered with and its
class's static description (`mixlab.registry.static_cfg`: the class attributes `first_conv`, `classifier`,
`default_norm`, and `timm_cfg(**model_kwargs)` for the output stride and whether the input size is fixed), as
timm's model files declare theirs. A built model's cfg (`model_pretrained_cfg`) follows it as built: its input
size, channels and pool size. `mixlab.registry.register_model` calls `register`; nothing here imports the
registry back.
"""
import math
import warnings
from typing import Any, Callable

from torch import nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet
from timm.models._registry import _model_entrypoints

from .data.normalization import fit_channels, mean_std

default_cfgs = {}   # name -> timm DefaultCfg; timm's register_model reads it from this module
__all__ = []        # timm's register_model appends each entrypoint's name


def register(name: str, cfg: dict, static: dict, build: Callable[..., nn.Module]) -> None:
    """Make `name` a timm model: its pretrained cfg from the registered `cfg` and the class's `static`
    description, its entrypoint building through `build` (the registry's create_model for that name)."""
    if name in _model_entrypoints and getattr(_model_entrypoints[name], "__module__", None) != __name__:
        warnings.warn(f"mixlab model {name!r} is not registered with timm: timm already has a model of that name",
                      stacklevel=3)
        return
    c, s, _ = cfg["input_size"]
    reduction = static["reduction"]
    default_cfgs.update(generate_default_cfgs({name: _pretrained_cfg(
        name, cfg, chans=c, size=s, num_classes=cfg.get("num_classes"), norm=static["norm"],
        pool_size=None if reduction is None else (math.ceil(s / reduction),) * 2,
        fixed_input_size=static["fixed_input_size"], first_conv=static["first_conv"],
        classifier=static["classifier"])}))
    entry = _entrypoint(name, cfg, build)
    globals()[name] = entry
    register_model(entry)


def model_pretrained_cfg(model: nn.Module, cfg: dict | None = None, name: str | None = None) -> dict:
    """timm's pretrained cfg for a built model: input size, channels, classes and pool size as built;
    first_conv, classifier and normalisation as its class declares them (or the registered cfg says)."""
    cfg = cfg or {}
    c, s, _ = cfg.get("input_size", (3, 32, 32))
    chans, size = getattr(model, "in_chans", c), getattr(model, "img_size", s)
    patch_embed = getattr(model, "patch_embed", None)
    cls = type(model)
    return _pretrained_cfg(
        name, cfg, chans=chans, size=size, num_classes=getattr(model, "num_classes", cfg.get("num_classes")),
        norm=getattr(cls, "default_norm", "imagenet"), pool_size=_pool_size(model, size),
        fixed_input_size=patch_embed is not None and not getattr(patch_embed, "dynamic_img_size", True),
        first_conv=getattr(cls, "first_conv", None), classifier=getattr(cls, "classifier", None))


def _pretrained_cfg(name, cfg, *, chans, size, num_classes, norm, pool_size, fixed_input_size, first_conv,
                    classifier) -> dict[str, Any]:
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        mean, std = fit_channels(cfg["mean"], cfg["std"], chans)
    else:
        mean, std = mean_std(cfg.get("norm") or norm, chans)
    out = dict(
        architecture=name,
        input_size=(chans, size, size),
        fixed_input_size=fixed_input_size,
        # small-image datasets (CIFAR, MNIST) are evaluated on whole images; ImageNet nets on the 0.875 centre
        # crop of their training code (ml-cvnets' default crop ratio), resized bilinearly as there
        interpolation="bilinear",
        crop_pct=1.0 if size <= 64 else 0.875,
        mean=mean, std=std,
        num_classes=num_classes,
        pool_size=pool_size,
        first_conv=first_conv,
        classifier=classifier,
        description=cfg.get("source"),
        paper_ids=cfg.get("paper_ids"),
    )
    return {k: v for k, v in out.items() if v is not None or k in ("pool_size", "first_conv", "classifier")}


def _pool_size(model, size):
    """Spatial size of forward_features' output at the model's input size: size / the last feature stride."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    r = info[-1]["reduction"]
    return (math.ceil(size / r), math.ceil(size / r))


def _entrypoint(name, cfg, build):
    def entry(pretrained=False, **kwargs):
        if pretrained:
            _released_weights(name, kwargs)
        # feature_cls 'getter': features_only wraps the model in timm's FeatureGetterNet over
        # forward_intermediates; out_indices None = every feature_info level.
        model = build_model_with_cfg(build, name, pretrained,
                                     feature_cfg=dict(feature_cls="getter", out_indices=None), **kwargs)
        return _follow_built_model(model, name, cfg)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"{name}: {cfg.get('source') or 'a mixlab model'} (no pretrained weights)."
    return entry


def _released_weights(name, kwargs):
    """pretrained=True loads weights a release names (mixlab.hub): a `file` in pretrained_cfg(_overlay) takes its
    model_args and pretrained cfg from the config.json beside it; an hf-hub / local-dir cfg comes with them."""
    import json
    from pathlib import Path
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    cfg = kwargs.get("pretrained_cfg")
    cfg = cfg if isinstance(cfg, dict) else getattr(cfg, "__dict__", {}) or {}
    file = overlay.get("file") or cfg.get("file")
    if file and Path(file).is_file() and (Path(file).parent / "config.json").is_file():
        release = json.loads((Path(file).parent / "config.json").read_text())
        if release.get("architecture") != name:
            raise ValueError(f"{file} holds a {release.get('architecture')!r}, not a {name!r}")
        for key, value in release.get("model_args", {}).items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("num_classes", release.get("num_classes"))
        kwargs["pretrained_cfg_overlay"] = {**release.get("pretrained_cfg", {}), **overlay}
    elif not (file or cfg.get("hf_hub_id") or overlay.get("hf_hub_id") or cfg.get("url")):
        raise ValueError(f"mixlab ships no pretrained weights for {name}; train one with `mixlab train`, release it "
                         f"with `mixlab export --run RUN --hub OUT` and pass pretrained_cfg_overlay=dict(file="
                         f"'OUT/model.safetensors'), or load it with mixlab.load(run)")


def _follow_built_model(model, name, cfg):
    """timm sets the registered (native-size) cfg; input size, pool size and normalisation follow the model as
    built, except where the caller overlaid them (pretrained_cfg_overlay)."""
    inner = model.model if isinstance(model, FeatureGetterNet) else model
    if not hasattr(inner, "forward_head"):      # another feature wrapper (feature_cls='fx', ...): as timm made it
        return model
    registered = default_cfgs[name].default.to_dict()
    built = model_pretrained_cfg(inner, cfg, name)
    cfg = dict(inner.pretrained_cfg)
    for key, value in built.items():
        if cfg.get(key) == registered.get(key):
            cfg[key] = value
    inner.pretrained_cfg = inner.default_cfg = cfg
    if model is not inner:
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(cfg)
    return model
