"""Self-describing checkpoints: `config.json` (model name, kwargs, input size, classes, normalisation) beside
safetensors weights. No pickle is ever unpickled unless the caller asks for it, and then with weights_only."""
import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from .fileio import atomic_write, write_json
from .registry import build_from_config, model_spec
from .rundir import RunDir, RunError

WEIGHT_FILES = ("best.safetensors", "last.safetensors", "model.safetensors")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def model_config(model, **meta):
    """The part of config.json that rebuilds the model: name (or registered class), constructor kwargs, input
    size + data meta."""
    spec = model_spec(model)
    kwargs = spec["model_kwargs"]
    return {**spec,
            "input_size": [kwargs.get("in_chans", 3), kwargs.get("img_size", 32), kwargs.get("img_size", 32)],
            "num_classes": kwargs["num_classes"], **meta}


def save(model, directory, weights_name="model.safetensors", **meta):
    """Save `model` to `directory` as safetensors + config.json (meta: class_names, mean, std, dataset, …)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config.update(model_config(_unwrap(model), **meta))
    write_json(config_path, config)
    atomic_write(directory / weights_name, lambda tmp: save_model(_unwrap(model), tmp), suffix=".safetensors")
    return directory


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _unwrap(model):
    model = getattr(model, "module", model)          # DDP
    return getattr(model, "_orig_mod", model)        # torch.compile


def load(path, weights=None, map_location="cpu", allow_pickle=False):
    """Rebuild a model from a run directory, a saved directory, or a .safetensors file with config.json beside.

    `weights` picks the file inside a directory (default: best, else last, else model.safetensors). A pickle
    file (.pt/.pth/…) is refused unless `allow_pickle=True`, and even then it is read with weights_only=True.
    The model comes back in eval mode with `model.data_config` (mean, std, class names, input size).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        directory = path
        names = [weights] if weights else WEIGHT_FILES
        found = [directory / n for n in names if (directory / n).exists()]
        if not found:
            raise FileNotFoundError(f"{directory} holds none of {', '.join(names)}")
        weight_file = found[0]
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
        raise RunError(f"{config_path}: cannot build {config['model']!r} from it: {_first_line(e)}") from None
    if weight_file.suffix == ".safetensors":
        try:
            load_model(model, str(weight_file), strict=True, device=str(map_location))
        except Exception as e:
            raise ValueError(f"{weight_file} does not match model {config['model']}: {_first_line(e)}") from e
    else:
        try:
            # weights_only: the unpickler accepts tensors and plain containers only, so no code can run.
            state = torch.load(weight_file, map_location=map_location, weights_only=True)
        except Exception as e:
            raise ValueError(f"{weight_file.name} was refused by weights-only loading (it holds more than "
                             f"tensors): {_first_line(e)}") from e
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except Exception as e:
            raise ValueError(f"{weight_file} does not match model {config['model']}: {_first_line(e)}") from e
    model.data_config = {k: config.get(k) for k in ("input_size", "mean", "std", "class_names", "dataset",
                                                    "eval_transform")}
    model.pretrained_cfg.update({k: tuple(v) for k, v in model.data_config.items()
                                 if k in ("mean", "std") and v is not None})
    return model.eval()
