"""What stops or flags a run: non-finite numbers (stop) and collapse to chance level (flag, loudly).

Divergence: a NaN/inf training loss at any step, non-finite weights after the last update of an epoch, or a
non-finite test loss stops the run with `TrainingDiverged`; nothing of that epoch is committed, so the
checkpoint the message names holds the last finite weights.

Collapse (the H100 failure of the paper ViT under bf16: it trained, then fell to 10 % and stayed there):
    fell:  the best test top-1 so far was clearly above chance (≥ chance + max(5, chance) points) and the
           latest is at chance (≤ chance + max(1, chance / 5) points), or
    stuck: after at least `MIN_STEPS` optimiser steps (a smoke run of a few steps has not started, it has not
           collapsed), the training loss of the last two epochs is within 2 % of ln(K), the loss of a
           uniform prediction over K classes (with or without label smoothing), and the test top-1 is at
           chance.
"""
import math

import torch


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; the message names where and the last good checkpoint."""


def nonfinite_parameters(model):
    """The name of the first parameter holding NaN/inf, or None (one device sync in the common case)."""
    params = [(n, p) for n, p in model.named_parameters()]
    if not params:
        return None
    if bool(torch.stack([torch.isfinite(p.detach()).all() for _, p in params]).all()):
        return None
    return next(n for n, p in params if not bool(torch.isfinite(p.detach()).all()))


MIN_STEPS = 200


def collapse_status(rows, num_classes, steps_done=None):
    """A one-line reason when the epochs so far (`rows` of metrics) show a collapse, else None."""
    if not rows or num_classes < 2:
        return None
    chance = 100.0 / num_classes
    above, at = chance + max(5.0, chance), chance + max(1.0, chance / 5)
    tops = [r["test_top1"] for r in rows]
    best, last = max(tops), tops[-1]
    if last > at:
        return None
    if best >= above:
        return (f"test top-1 fell to {last:.2f}% (chance is {chance:.2f}%) after reaching {best:.2f}% at epoch "
                f"{tops.index(best) + 1}")
    ln_k = math.log(num_classes)
    recent = [r["train_loss"] for r in rows[-2:]]
    enough = steps_done is None or steps_done >= MIN_STEPS
    if enough and len(recent) == 2 and all(abs(v - ln_k) <= 0.02 * ln_k for v in recent):
        return (f"the training loss sits at ln({num_classes}) = {ln_k:.3f} (last two epochs "
                f"{recent[0]:.3f}, {recent[1]:.3f}) and test top-1 is {last:.2f}% (chance {chance:.2f}%)")
    return None
