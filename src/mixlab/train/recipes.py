"""`Recipe`: every training hyper-parameter, its type, its allowed values and its default, in one place.

Named, versioned recipes are JSON files in `mixlab/recipes/` (package data) holding values for these fields;
a user's recipe is a YAML (.yaml/.yml) or JSON file with the same keys (any key left out takes the field's
default, an unknown key is a one-line error naming the closest known one). `--set key=value` overrides are parsed and validated against the field types and choices, with a one-line
error naming the key and what it accepts. A resolved `Recipe` is a frozen value: the engine receives it,
records it in the run's config.json, and a resume reads it back from there.

`auto` = the recipe a model's registration names (cfg key `recipe`, e.g. `ddpm` for the diffusion UNets), else
`paper` for the faithful `*_paper` isotropic models, `dianet` for the CIFAR ResNets (plain, SE and DIA),
`mixlab` otherwise.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from ..data.transforms import INTERPOLATIONS, TRAIN_TRANSFORMS

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "multistep")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The β schedules of diffusers' DDPMScheduler that mixlab.diffusion accepts (ddpm.BETA_SCHEDULES, kept equal).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
DIANET_PREFIXES = ("resnet", "dia_resnet", "dia_wrn", "wrn", "preresnet", "dia_preresnet", "resnext",
                   "dia_resnext", "se_resnet", "se_preresnet")


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Each field's metadata says what it means; `choices` restrict strings."""
    name: str = "custom"
    version: int = 1
    description: str = ""
    source: str = ""
    notes: str = ""
    # what the recipe was measured to give (result, runtime, device, date, where it is recorded), or that it
    # has not been measured: a statement of fact, as big_vision configs give in their header
    expected: str = ""
    optimizer: str = field(default="adamw", metadata={"choices": OPTIMIZERS})
    lr: float = field(default=1e-3, metadata={"min": 0.0})
    # None: lr as given; N: lr is per N images and scales linearly with the batch
    lr_base_batch_size: Optional[int] = field(default=None, metadata={"min": 1})
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    # True: no decay on biases, norms and model.no_weight_decay(); False: every parameter (DIANet code)
    weight_decay_filter: bool = True
    momentum: float = field(default=0.9, metadata={"min": 0.0})
    batch_size: int = field(default=128, metadata={"min": 1})
    epochs: int = field(default=100, metadata={"min": 1})
    # None: whole epochs. N: the run stops after N optimizer steps and the schedule (warm-up + cosine) ends
    # there; the run's epochs become ceil(N / steps per epoch), the last one partial (mixlab compare's budgets)
    max_steps: Optional[int] = field(default=None, metadata={"min": 1})
    schedule: str = field(default="constant", metadata={"choices": SCHEDULES})
    warmup_epochs: float = field(default=0.0, metadata={"min": 0.0})
    min_lr: float = field(default=0.0, metadata={"min": 0.0})
    milestones: tuple = ()                   # epochs at which multistep multiplies the lr by gamma
    gamma: float = field(default=0.1, metadata={"min": 0.0})
    label_smoothing: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    grad_clip: Optional[float] = field(default=None, metadata={"min": 0.0})
    ema_decay: Optional[float] = field(default=None, metadata={"min": 0.0, "max": 1.0})
    # fp32 is true fp32 (TF32 matmuls off, as the official code ran); bf16/fp16 are autocast (fp16 + scaler);
    # auto is bf16 on CUDA and fp32 on a CPU (train/precision.py); a run records the one it resolved to
    precision: str = field(default="fp32", metadata={"choices": PRECISIONS})
    # False keeps the last partial batch, as a default torch DataLoader (and the official code) does
    drop_last: bool = True
    crop_padding: int = field(default=4, metadata={"min": 0})
    flip: bool = True
    # "dataset" (the dataset's own statistics), [m, s] (every channel), or [[m…], [s…]]
    normalize: Union[str, list] = "dataset"
    # the official NiNformer/Activator 2024 quirk: evaluate on randomly cropped and flipped test images
    test_augment: bool = False
    # test-time augmentation: each test image is scored by the mean of its own and its mirror image's logits
    # (airbench's flip TTA); evaluation is otherwise clean. Off in every recipe but `speed`.
    eval_flip: bool = False
    # model and activations in channels-last memory: the layout oneDNN's CPU convolutions are fastest in
    # (docs/BENCHMARKS.md); numerics are unchanged up to summation order
    channels_last: bool = False
    # nn.Dropout's CPU mask through 16-bit uniform integers (mixlab.layers.dropout: the same p up to 2^-17, a
    # cheaper random stream); on in mixlab's own recipes, off in the papers' so their streams stay the official
    fast_dropout: bool = False

    # --- image size and resizing (mixlab.data.transforms, timm's conventions) --------------------------------
    # The side S every image is brought to. None: the images' own size when they share one (square) size;
    # an ImageFolder or file list whose images differ or do not fit the model goes to the model's native
    # size (one log line says so). The run records the resolved value.
    img_size: Optional[int] = field(default=None, metadata={"min": 1})
    # crop_flip: the eval resize, then crop_padding + flip; random_resized_crop: timm's RRC of the image + flip
    train_transform: str = field(default="crop_flip", metadata={"choices": TRAIN_TRANSFORMS})
    # eval transform: shorter side to floor(S / crop_pct), centre crop S. None: 1.0 (the whole shorter side)
    # with crop_flip, 0.875 (timm's default) with random_resized_crop. The run records the resolved value.
    crop_pct: Optional[float] = field(default=None, metadata={"min": 0.05, "max": 1.0})
    # the random-resized crop's smallest area fraction: scale = (crop_scale_min, 1) in timm/torchvision
    crop_scale_min: float = field(default=0.08, metadata={"min": 0.01, "max": 1.0})
    # the resampling filter of every resize (eval transform, random-resized crop, --img-size on built-ins)
    interpolation: str = field(default="bilinear", metadata={"choices": INTERPOLATIONS})

    # --- strong augmentation (mixlab.data.augment, timm's semantics); every part is off unless set ------------
    # a timm RandAugment string, e.g. "rand-m9-mstd0.5-inc1"; None: no RandAugment
    randaugment: Optional[str] = field(default=None, metadata={"check": "randaugment"})
    random_erasing: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})   # probability per image
    mixup: float = field(default=0.0, metadata={"min": 0.0})       # Mixup's Beta(α, α); 0: off
    cutmix: float = field(default=0.0, metadata={"min": 0.0})      # CutMix's Beta(α, α); 0: off
    mixup_prob: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})         # of mixing a batch at all
    mixup_switch_prob: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # of CutMix when both are on
    # stochastic depth of models that have it (drop_path_rate); None: the model's own default
    drop_path_rate: Optional[float] = field(default=None, metadata={"min": 0.0, "max": 1.0})

    # --- diffusion (DDPM, mixlab.diffusion): read by the diffusion task only, ignored by classifiers -------
    diffusion_timesteps: int = field(default=1000, metadata={"min": 2})          # T of the forward process
    beta_schedule: str = field(default="linear", metadata={"choices": BETA_SCHEDULES})
    beta_start: float = field(default=1e-4, metadata={"min": 0.0, "max": 1.0})   # β₁ (DDPM: 1e-4)
    beta_end: float = field(default=0.02, metadata={"min": 0.0, "max": 1.0})     # β_T (DDPM: 0.02)
    # reverse steps when sampling (grids, `mixlab sample`, the table's FID); None: all T
    sample_steps: Optional[int] = field(default=None, metadata={"min": 1})
    sample_every: int = field(default=10, metadata={"min": 1})   # epochs between sample grids (and the last)
    sample_count: int = field(default=64, metadata={"min": 1})   # images in each grid

    # --- construction and validation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, where: str = "recipe") -> "Recipe":
        """A validated Recipe from a dict (a recipe file, or config.json's recorded recipe)."""
        if not isinstance(values, dict):
            raise ValueError(f"{where} must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib
            close = [m for k in unknown for m in difflib.get_close_matches(k, sorted(known), n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}; known: {', '.join(sorted(known))}")
        return cls(**{k: check_value(cls.field_info(k), v, where) for k, v in values.items()})

    @classmethod
    def field_info(cls, key: str) -> dataclasses.Field:
        for f in fields(cls):
            if f.name == key:
                return f
        raise ValueError(f"unknown recipe key {key!r}; known: {', '.join(sorted(f.name for f in fields(cls)))}")

    def replace(self, where: str = "--set", **changes: Any) -> "Recipe":
        """A copy with `changes` applied, each validated (strings from the command line are parsed)."""
        checked = {k: check_value(self.field_info(k), parse_value(v), where) for k, v in changes.items()}
        return dataclasses.replace(self, **checked)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def parse_value(value: Any) -> Any:
    """A command-line string read as JSON when it is JSON (numbers, true/false, null, lists), else kept."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _type_name(tp):
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a list",
             list: "a list"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def check_value(f, value, where):
    """`value` converted to field `f`'s type and checked against its bounds/choices, or a one-line error."""
    tp, meta = f.type, f.metadata
    optional = False
    if getattr(tp, "__origin__", None) is Union:
        args = [a for a in tp.__args__ if a is not type(None)]
        optional = type(None) in tp.__args__
        tp = args[0] if len(args) == 1 else tp
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: {f.name} cannot be null")
    if f.name == "normalize":
        return _check_normalize(value, where)
    if meta.get("check") == "randaugment":
        from ..data.augment import parse_randaugment
        try:
            parse_randaugment(value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        return value
    bad = f"{where}: {f.name} must be {_type_name(tp)}"
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{bad}, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{bad}, got {value!r}")
        value = int(value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{bad} (finite), got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{bad}, got {value!r}")
    elif tp is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
            raise ValueError(f"{where}: {f.name} must be a list of integers, got {value!r}")
        value = tuple(value)
    if "choices" in meta and value not in meta["choices"]:
        raise ValueError(f"{where}: {f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ValueError(f"{where}: {f.name} must be at least {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ValueError(f"{where}: {f.name} must be at most {meta['max']}, got {value!r}")
    return value


def _check_normalize(value, where):
    def numbers(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) or \
            (isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
    if value == "dataset":
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(numbers(v) for v in value):
        std = value[1] if isinstance(value[1], list) else [value[1]]
        if min(std) <= 0:
            raise ValueError(f"{where}: normalize std must be positive, got {value!r}")
        return list(value)
    raise ValueError(f"{where}: normalize must be \"dataset\", [mean, std] or [[means…], [stds…]], got {value!r}")


def list_recipes() -> list[str]:
    """Names of the recipes shipped with mixlab, sorted."""
    return sorted(p.name[:-5] for p in resources.files("mixlab").joinpath("recipes").iterdir()
                  if p.name.endswith(".json"))


RECIPE_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A validated `Recipe` by name ('paper', 'dianet', 'mixlab', …) or from a .json/.yaml/.yml file path.

    A file's `name` defaults to its stem (what the run records and the printed tables show)."""
    path = Path(str(name_or_path))
    if path.suffix.lower() in RECIPE_FILE_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"recipe file {path} does not exist")
        if not path.is_file():   # a named pipe would block the read forever
            raise ValueError(f"recipe file {path} is not a regular file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"recipe file {path} cannot be read: {e}") from None
        values = _parse_recipe_text(text, str(path), yaml=path.suffix.lower() != ".json")
        if isinstance(values, dict):
            values.setdefault("name", path.stem)
        return Recipe.from_dict(values, str(path))
    if name_or_path not in list_recipes():
        raise ValueError(f"unknown recipe {name_or_path!r}; choose auto, {', '.join(list_recipes())} "
                         f"or a path to a recipe .yaml/.json")
    text = resources.files("mixlab").joinpath("recipes", f"{name_or_path}.json").read_text()
    where = f"recipe {name_or_path}"
    return Recipe.from_dict(_parse_recipe_text(text, where, yaml=False), where)


def _parse_recipe_text(text, where, yaml):
    if not yaml:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON: {e}") from None
        except RecursionError:   # thousands of nested brackets: no recipe looks like that
            raise ValueError(f"{where} is not a recipe (its JSON is nested too deeply)") from None
    import yaml as pyyaml   # a dependency of timm, and of mixlab itself
    try:
        values = pyyaml.safe_load(text)   # safe_load: plain data only, no tags that construct objects
    except pyyaml.YAMLError as e:
        raise ValueError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError(f"{where} is not a recipe (its YAML is nested too deeply)") from None
    if values is None:
        return {}
    if isinstance(values, dict):
        # YAML 1.1 reads 1e-3 (no dot) as a string: a number field's string is read as JSON, as --set does
        numeric = {f.name for f in fields(Recipe) if f.type is not str}
        values = {k: parse_value(v) if k in numeric and isinstance(v, str) else v for k, v in values.items()}
    return values


def auto_recipe_name(model_name):
    """The recipe `auto` stands for: the one the model's registration names, else faithful paper configs get
    their paper's recipe."""
    from ..registry import model_cfg
    try:
        named = model_cfg(model_name).get("recipe")
    except ValueError:   # not registered: the name rules below still answer (the engine rejects it later)
        named = None
    if named:
        return named
    if model_name.endswith("_paper"):
        return "paper"
    if model_name.startswith(DIANET_PREFIXES):
        return "dianet"
    return "mixlab"


def resolve_recipe(recipe: str | None, model_name: str) -> Recipe:
    """The named (or `auto`) recipe for `model_name`, as a Recipe."""
    return load_recipe(auto_recipe_name(model_name) if recipe in (None, "auto") else recipe)
