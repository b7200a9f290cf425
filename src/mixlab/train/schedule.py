"""Learning rate as a pure function of the optimisation step, so resuming needs no scheduler state.

constant:  lr
cosine:    linear warm-up 0 → lr over W steps, then min_lr + (lr − min_lr)·½(1 + cos(π·t)), t ∈ [0, 1], over
           the run's steps (the recipe's max_steps when it sets a step budget, else epochs × steps per epoch)
multistep: lr · γ^(number of milestones ≤ epoch), stepped per epoch as in the DIANet code
"""
import math


def total_steps(recipe, epochs, steps_per_epoch):
    """Optimizer steps of the run: the recipe's `max_steps` when set (a step budget), else every epoch's."""
    return recipe.max_steps if getattr(recipe, "max_steps", None) else max(epochs * steps_per_epoch, 1)


def warmup_steps(recipe, epochs, steps_per_epoch):
    """Warm-up length in steps, at most a fifth of the run so short runs still reach the peak lr."""
    if getattr(recipe, "max_steps", None):
        return int(min((recipe.warmup_epochs or 0) * steps_per_epoch, 0.2 * recipe.max_steps))
    return int(min(recipe.warmup_epochs or 0, 0.2 * epochs) * steps_per_epoch)


def lr_at(step, recipe, lr, epochs, steps_per_epoch):
    """The learning rate for 0-based optimisation `step` of a run of `epochs` × `steps_per_epoch`."""
    kind = recipe.schedule
    if kind == "constant":
        return lr
    if kind == "multistep":
        epoch = step // steps_per_epoch
        return lr * recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
    if kind == "cosine":
        total = total_steps(recipe, epochs, steps_per_epoch)
        warm = warmup_steps(recipe, epochs, steps_per_epoch)
        if step < warm:
            return lr * (step + 1) / warm
        t = min((step - warm) / max(total - warm, 1), 1.0)
        min_lr = recipe.min_lr
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {kind!r}; choose constant, cosine or multistep")
