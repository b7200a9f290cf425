"""What `mixlab compare` will train, settled before anything trains: the skeleton, each mixer's width and
arguments, and the budget turned into optimizer steps.

One skeleton, only the mixer differs: patch embedding, depth, channel MLP (hidden = mlp_ratio · width), final
norm, mean pooling and head are the skeleton's; each mixer brings its own arguments, derived from the width
(`mixer_args`). `--match params|flops` changes the width per mixer (even widths, nearest to the first mixer's
figure; `match_width`), everything else stays.

Budgets (`parse_budget`), all turned into a step count N that the recipe's schedule (warm-up + cosine) is
laid over (recipe key `max_steps`), so every run finishes its schedule exactly at the budget:

    2e13flops   training FLOPs: N = ⌊budget / (F_train · batch)⌋, F_train = forward + backward FLOPs of one
                image counted by mixlab.bench.flops (device-independent: a cheaper mixer gets more steps)
    3000steps   N optimizer steps
    3epochs     N = epochs · ⌊train images / batch⌋ (full epochs of the whole training set)
    300s, 5min  seconds of this device: N = ⌊seconds / t_step⌋, t_step the median training step of the model
                at the run's batch, measured once before the runs (data loading and evaluation not counted)
"""
import math
import re
from dataclasses import dataclass

BUDGET_UNITS = {"flops": "flops", "steps": "steps", "epochs": "epochs", "s": "seconds", "min": "seconds"}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(flops|steps|epochs|s|min)\s*$")

# Fixed parts of every skeleton: the MetaFormer-style isotropic classifier of the *_tiny/_demo configs.
FIXED = dict(global_pool="avg", final_norm=True, drop_rate=0.0, drop_path_rate=0.0, weight_init="trunc_normal",
             pos_embed="none")
# The registered isotropic config every compare run is built from: model_kwargs set every one of its arguments
# (FIXED + the skeleton + the mixer's), so only its builder is used, never its own values.
BASE_MODEL = "identityformer_tiny"
SKELETONS = {
    # the demo's (mixlab demo): 16 tokens on 28 px, a CPU minute per model
    "demo": dict(patch_size=7, width=64, depth=2, mlp_ratio=2.0),
    # 64 tokens on 32 px at a width a 2-core CPU trains in minutes
    "small": dict(patch_size=4, width=96, depth=4, mlp_ratio=2.0),
    # the NiNformer/Activator papers' size (d 256, depth 4, hidden 512, patch 4), modern init and no dropout
    "paper": dict(patch_size=4, width=256, depth=4, mlp_ratio=2.0),
}
MATCH = ("params", "flops")
MATCH_TOLERANCE = 0.05


@dataclass(frozen=True)
class Budget:
    kind: str        # flops | steps | epochs | seconds
    value: float
    text: str

    def describe(self):
        return {"flops": f"{self.value:.3g} training FLOPs", "steps": f"{int(self.value)} optimizer steps",
                "epochs": f"{int(self.value)} epochs", "seconds": f"{self.value:g} s of this device"}[self.kind]


def parse_budget(text):
    """A `Budget` from '2e13flops', '3000steps', '3epochs', '300s' or '5min'; a one-line error otherwise."""
    m = _BUDGET.match(str(text))
    if not m:
        raise ValueError(f"--budget {text!r}: give a number and a unit: 2e13flops, 3000steps, 3epochs, 300s or 5min")
    value, unit = float(m.group(1)), m.group(2)
    if unit == "min":
        value *= 60
    kind = BUDGET_UNITS[unit]
    if kind in ("steps", "epochs") and not value.is_integer():
        raise ValueError(f"--budget {text!r}: {kind} must be a whole number")
    if value <= 0:
        raise ValueError(f"--budget {text!r} must be positive")
    return Budget(kind, value, str(text).strip())


def budget_steps(budget, batch_size, train_images=None, train_flops=None, step_seconds=None):
    """Optimizer steps of one run under `budget` (module docstring); at least one, or a one-line error."""
    if budget.kind == "steps":
        steps = int(budget.value)
    elif budget.kind == "epochs":
        steps = int(budget.value) * (train_images // batch_size)
    elif budget.kind == "flops":
        steps = int(budget.value // (train_flops * batch_size))
    else:
        steps = int(budget.value // step_seconds)
    if steps < 1:
        raise ValueError(f"a budget of {budget.describe()} is less than one training step of batch {batch_size} "
                         f"for this model; raise --budget")
    return steps


def skeleton_args(skeleton=None, width=None, depth=None, patch=None, mlp_ratio=None):
    """{patch_size, width, depth, mlp_ratio}: the named skeleton with any flag set on top (default 'small')."""
    name = skeleton or "small"
    if name not in SKELETONS:
        raise ValueError(f"unknown skeleton {name!r}; choose one of {', '.join(SKELETONS)}, or set --width --depth "
                         f"--patch --mlp-ratio")
    out = dict(SKELETONS[name])
    for key, value in (("width", width), ("depth", depth), ("patch_size", patch), ("mlp_ratio", mlp_ratio)):
        if value is not None:
            if (key == "mlp_ratio" and not value > 0) or (key != "mlp_ratio" and (int(value) != value or value < 1)):
                raise ValueError(f"--{key.replace('_size', '').replace('_', '-')} must be positive, got {value!r}")
            out[key] = value
    return out


def divisor_near(n, target):
    """The divisor of n closest to target (ties to the smaller): head counts and AFF groups for any width."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def mixer_args(mixer, width):
    """The model arguments a mixer brings to the skeleton at `width`: its own options, and for attention the
    learned position embedding (the one mixer with no notion of where a token is)."""
    if mixer == "attention":
        return {"mixer_kwargs": {"num_heads": divisor_near(width, width / 16)}, "pos_embed": "learn"}
    if mixer in ("token_mlp",):
        return {"mixer_kwargs": {"token_hidden_dim": width}}
    if mixer == "nin_gating":
        return {"mixer_kwargs": {"hidden_dim": width}}
    if mixer == "glu_gating":
        return {"mixer_kwargs": {"hidden_dim": 2 * width}}
    if mixer == "aff":
        return {"mixer_kwargs": {"num_groups": divisor_near(width, width / 16)}}
    return {}


def model_kwargs(mixer, skeleton, width=None):
    """The `isotropic` model's arguments for `mixer` on `skeleton` (width overridden by `width`)."""
    w = int(width or skeleton["width"])
    return {**FIXED, "patch_size": int(skeleton["patch_size"]), "embed_dim": w, "depth": int(skeleton["depth"]),
            "mlp_hidden_dim": max(1, round(skeleton["mlp_ratio"] * w)), "mixer": mixer, **mixer_args(mixer, w)}


def mixer_label(mixer):
    """How tables and run directories name a mixer: its registered name, or a file mixer's class name."""
    return mixer.rpartition(":")[2] if ".py:" in mixer else mixer


def figures(kwargs, in_chans, img_size, num_classes):
    """(params, forward FLOPs per image, forward + backward FLOPs per image) of the isotropic model."""
    import torch
    from ..bench.flops import model_flops
    from ..registry import create_model
    torch.manual_seed(0)
    model = create_model(BASE_MODEL, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
    params = sum(p.numel() for p in model.parameters())
    size = (in_chans, img_size, img_size)
    return params, model_flops(model, size).total, model_flops(model, size, backward=True).total


def match_width(mixer, skeleton, target, by, in_chans, img_size, num_classes, max_width=4096):
    """The even width whose params (or forward FLOPs) are closest to `target`, and its figure: both grow with
    the width, so a doubling search brackets it and bisection finds it. A one-line error when no width comes
    within MATCH_TOLERANCE (a mixer whose cost hardly depends on the width)."""
    index = 0 if by == "params" else 1

    def value(w):
        return figures(model_kwargs(mixer, skeleton, w), in_chans, img_size, num_classes)[index]

    lo, hi = 2, 2
    while value(hi) < target and hi < max_width:
        lo, hi = hi, hi * 2
    while hi - lo > 2:
        mid = (lo + hi) // 2 // 2 * 2
        if value(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: abs(value(w) - target))
    got = value(best)
    if abs(got - target) > MATCH_TOLERANCE * target:
        raise ValueError(f"--match {by}: no width brings {mixer_label(mixer)} within ±{MATCH_TOLERANCE:.0%} of "
                         f"{target:,} {by} (closest: width {best}, {got:,})")
    return best, got


def warmup_note(recipe, steps, steps_per_epoch):
    """The warm-up length in steps of a budgeted run (train/schedule.py), for the plan's log line."""
    from ..train.schedule import warmup_steps
    return warmup_steps(recipe.replace(max_steps=steps), math.ceil(steps / max(steps_per_epoch, 1)),
                        steps_per_epoch)
