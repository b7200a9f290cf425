"""Every mixlab model as a timm model, registered the way timm's own model files do: a `default_cfgs` table of
pretrained cfgs (no weights) and one `@register_model` entrypoint per name that builds through
`timm.models.build_model_with_cfg`. So `timm.create_model(name, features_only=True, out_indices=...)`,
`get_pretrained_cfg(name)`, `list_models(name_matches_cfg=True)` and `resolve_data_config` all work.

A model's cfg is read off the model itself, built once on the meta device when it is registered
(`mixlab.registry.model_pretrained_cfg`): any model registered through `mixlab.registry.register_model`
gets one, with no list of names here.
"""
import warnings

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet
from timm.models._registry import _model_entrypoints

from . import registry

default_cfgs = {}   # name -> timm DefaultCfg; timm's register_model reads it from this module


def register(name):
    """Make `name` a timm model (its pretrained cfg comes from the model built on the meta device)."""
    if name in _model_entrypoints and getattr(_model_entrypoints[name], "__module__", None) != __name__:
        warnings.warn(f"mixlab model {name!r} is not registered with timm: timm already has a model of that name",
                      stacklevel=3)
        return
    model = _build_once(name)
    if model is None:
        return
    default_cfgs.update(generate_default_cfgs({name: registry.model_pretrained_cfg(model, registry.model_cfg(name),
                                                                                     name)}))
    entry = _entrypoint(name)
    globals()[name] = entry
    register_model(entry)


def _build_once(name):
    """The model at its native configuration: on the meta device (no memory, no init), else on the CPU for a
    model whose constructor computes with tensor values; None (with a warning) if it cannot be built."""
    for device in ("meta", "cpu"):
        try:
            return registry.create_model(name, device=device)
        except Exception as e:   # noqa: BLE001 - a model that cannot be built stays out of timm, not out of mixlab
            error = e
    warnings.warn(f"mixlab model {name!r} is not registered with timm: building it failed ({error})", stacklevel=4)
    return None


def _entrypoint(name):
    def entry(pretrained=False, **kwargs):
        if pretrained:
            raise ValueError(f"mixlab ships no pretrained weights for {name}; train one with `mixlab train` and "
                             f"load it with mixlab.load(run)")
        # feature_cls 'getter': features_only wraps the model in timm's FeatureGetterNet over
        # forward_intermediates; out_indices None = every feature_info level.
        model = build_model_with_cfg(lambda **kw: registry.create_model(name, **kw), name, pretrained,
                                     feature_cfg=dict(feature_cls="getter", out_indices=None), **kwargs)
        return _follow_built_model(model, name)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"{name}: {registry.model_cfg(name).get('source') or 'a mixlab model'} (no pretrained weights)."
    return entry


def _follow_built_model(model, name):
    """timm sets the registered (native-size) cfg; input size, pool size and normalisation follow the model as
    built, except where the caller overlaid them (pretrained_cfg_overlay)."""
    inner = model.model if isinstance(model, FeatureGetterNet) else model
    if not hasattr(inner, "forward_head"):      # another feature wrapper (feature_cls='fx', ...): as timm made it
        return model
    registered = default_cfgs[name].default.to_dict()
    built = registry.model_pretrained_cfg(inner, registry.model_cfg(name), name)
    cfg = dict(inner.pretrained_cfg)
    for key, value in built.items():
        if cfg.get(key) == registered.get(key):
            cfg[key] = value
    inner.pretrained_cfg = inner.default_cfg = cfg
    if model is not inner:
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(cfg)
    return model
