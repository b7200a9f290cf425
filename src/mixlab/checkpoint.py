"""Self-describing checkpoints: `config.json` (model name, kwargs, input size, classes, normalisation) beside
safetensors weights. No pickle is ever unpickled unless the caller asks for it, and then with weights_only."""
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from torch import nn

from . import registry
from .fileio import atomic_write, first_line, write_json
from .layers.mlp import CHANNEL_MLPS
from .mixers import MIXERS
from .rundir import RunDir, RunError, weights_path
from .timm_models import model_pretrained_cfg

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def model_spec(model: nn.Module) -> dict:
    """What rebuilds `model`: {"model": name, "model_kwargs": kwargs} for a model built by name, or
    {"model": class name, "model_class": class name, "model_kwargs": constructor kwargs} for one built
    directly from a class registered with `register_model_class` (custom mixers are recorded by their
    registered name)."""
    kwargs = dict(getattr(model, "init_kwargs", None) or {})
    name = getattr(model, "model_name", None)
    if name is not None:
        return {"model": name, "model_kwargs": {**kwargs, "num_classes": getattr(model, "num_classes", None)}}
    cls = type(model)
    if registry.MODEL_CLASSES.get(cls.__name__) is not cls or not kwargs:
        raise ValueError(f"a {cls.__name__} built directly cannot be saved: build it with mixlab.create_model(name) "
                         f"or register its class with mixlab.registry.register_model_class")
    kwargs["num_classes"] = getattr(model, "num_classes", kwargs.get("num_classes"))
    kwargs = {k: _by_name(cls.__name__, k, v) for k, v in kwargs.items()}
    return {"model": cls.__name__, "model_class": cls.__name__, "model_kwargs": kwargs}


def _by_name(owner, key, value):
    """A constructor argument as JSON: registered mixer / channel-MLP classes by name; anything else that is not
    plain data is refused in one line."""
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


def build_from_config(config: dict) -> nn.Module:
    """Rebuild the model a checkpoint's config.json describes (see `model_spec`)."""
    kwargs = dict(config.get("model_kwargs", {}))
    if "model_class" not in config:
        return registry.create_model(config["model"], **kwargs)
    cls = registry.MODEL_CLASSES.get(config["model_class"])
    if cls is None:
        raise ValueError(f"unknown model class {config['model_class']!r}; import the module that defines it first")
    model = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    model.pretrained_cfg = model.default_cfg = model_pretrained_cfg(model)
    return model


def model_config(model: nn.Module, **meta: Any) -> dict:
    """The part of config.json that rebuilds the model: name (or registered class), constructor kwargs, input
    size + data meta."""
    spec = model_spec(model)
    kwargs = spec["model_kwargs"]
    return {**spec,
            "input_size": [kwargs.get("in_chans", 3), kwargs.get("img_size", 32), kwargs.get("img_size", 32)],
            "num_classes": kwargs["num_classes"], **meta}


def save(model: nn.Module, directory: str | Path, weights_name: str = "model.safetensors", **meta: Any) -> Path:
    """Save `model` to `directory` as safetensors + config.json (meta: class_names, mean, std, dataset, …)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config.update(model_config(_unwrap(model), **meta))
    write_json(config_path, config)
    atomic_write(directory / weights_name, lambda tmp: save_model(_unwrap(model), tmp), suffix=".safetensors")
    return directory


def _informative_line(err):
    """The first informative line of an error (torch's 'Error(s) in loading state_dict for X:' says nothing
    until its next line, the first mismatch)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"[:400]
    return lines[0][:400]


def _unwrap(model):
    model = getattr(model, "module", model)          # DDP
    return getattr(model, "_orig_mod", model)        # torch.compile


def load(path: str | Path, weights: str | None = None, map_location: str | torch.device = "cpu",
         allow_pickle: bool = False) -> nn.Module:
    """Rebuild a model from a run directory, a saved directory, or a .safetensors file with config.json beside.

    `weights` picks the file inside a directory (default: `rundir.default_weights` — a training run's
    last.safetensors, or best.safetensors when it chose its best epoch on a validation split; a saved
    folder's best, else last, else model.safetensors). A pickle
    file (.pt/.pth/…) is refused unless `allow_pickle=True`, and even then it is read with weights_only=True.
    The model comes back in eval mode with `model.data_config` (mean, std, class names, input size).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        directory, weight_file = path, weights_path(path, weights)
    else:
        directory, weight_file = path.parent, path
    if weight_file.suffix != ".safetensors":
        if not allow_pickle:
            raise ValueError(f"refusing to load {weight_file.name}: it is not safetensors and pickle files can run "
                             f"code; pass allow_pickle=True only for files you trust (read with weights_only=True)")
        if weight_file.suffix not in PICKLE_SUFFIXES:
            raise ValueError(f"{weight_file.name}: unknown checkpoint format")
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"no config.json beside {weight_file}: cannot tell which model to build")
    config = RunDir(directory).read_config()
    try:
        model = build_from_config(config)
    except (TypeError, ValueError) as e:
        raise RunError(f"{config_path}: cannot build {config['model']!r} from it: {first_line(e)}") from None
    if not weight_file.is_file():   # a folder, or a named pipe that would block the read forever
        raise RunError(f"{weight_file} is not a regular file, so no weights can be read from it")
    if weight_file.suffix == ".safetensors":
        try:
            load_model(model, str(weight_file), strict=True, device=str(map_location))
        except Exception as e:
            if "deserializ" in str(e) or type(e).__name__ == "SafetensorError":   # not the layout: the bytes
                raise RunError(f"{weight_file} is not a readable safetensors file ({_informative_line(e)}); the "
                               f"checkpoint is damaged") from None
            raise ValueError(f"{weight_file} does not match model {config['model']}: {_informative_line(e)}") from e
    else:
        try:
            # weights_only: the unpickler accepts tensors and plain containers only, so no code can run.
            state = torch.load(weight_file, map_location=map_location, weights_only=True)
        except Exception as e:
            raise ValueError(f"{weight_file.name} was refused by weights-only loading (it holds more than "
                             f"tensors): {first_line(e)}") from e
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise ValueError(f"{weight_file} does not match model {config['model']}: {first_line(e)}") from e
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:   # a diverged or damaged file: every score from it would be nan, never an answer
        raise RunError(f"{weight_file} holds non-finite weights ({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}); "
                       f"the checkpoint is damaged")
    class_names = config.get("class_names")
    if class_names is not None and not (isinstance(class_names, list) and all(isinstance(c, str) for c in class_names)):
        raise RunError(f"{config_path}: 'class_names' must be a list of strings, got {type(class_names).__name__}")
    for key in ("mean", "std"):   # a NaN here makes every prediction nan: a damaged config, not an answer
        value = config.get(key)
        if value is not None and not (isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise RunError(f"{config_path}: {key!r} must be a list of finite numbers, got {value!r}")
    model.data_config = {k: config.get(k) for k in ("input_size", "mean", "std", "class_names", "dataset",
                                                    "eval_transform")}
    model.pretrained_cfg.update({k: tuple(v) for k, v in model.data_config.items()
                                 if k in ("mean", "std") and v is not None})
    return model.eval()
