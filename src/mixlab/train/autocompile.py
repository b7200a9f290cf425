"""Whether a training run steps through `torch.compile`: on, off, or auto — measured on the run itself.

`TrainConfig.compile` True / False pins it (`mixlab train --compile` / `--no-compile`). None, the default, is
**auto**, decided at epoch boundaries from the run's own step times:

1. The first epoch trains eager. Its step time t_e = (pass − first step) / (steps − 1): the first step of an
   epoch also carries the epoch's augmentation plan and allocator warm-up, so it is set apart.
2. If the eager time left, t_e · steps_left, is under `MIN_EAGER_LEFT_S` (30 min), the run stays eager:
   compiling cost 8–40 s on the idle CPU measured and 156 s with a cold cache on the loaded one, and saved
   0–18 % per step (docs/BENCHMARKS.md). At 30 min a kept 3 % gain repays a 54 s compilation, and a trial that
   is dropped costs at most c / 30 min: 2 % typically, 9 % in the worst case seen.
3. Otherwise the next epoch is a compiled trial: t_c likewise, and the compilation's cost
   c = its first step − the eager epoch's first step.
4. The run keeps the compiled net iff t_c ≤ KEEP_RATIO · t_e; else it returns to eager for the rest.

A table per model would not do: on the same CPU the gain ranged 0.96–1.18× by model, and a GPU differs again;
the run's own epochs are the only measurement that fits every model, device and batch. Everything measured and
the decision live in history["compile"] (so in the trainer state and summary.json), and a resume continues with
the recorded decision. The decision is timing-based: runs that must agree bit-for-bit across machines pin it.
If compiling fails (e.g. no C++ compiler for inductor), auto returns to eager with a one-line note and the
failed step is redone from the same random state; a pinned --compile fails as before.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..fileio import first_line
from . import distributed

MIN_EAGER_LEFT_S = 1800.0  # a compiled trial only where at least this much eager training is left
KEEP_RATIO = 0.97          # keep compiling only for a ≥ 3 % faster step (smaller is within a shared CPU's noise)
BACKEND = "inductor"       # torch.compile's backend (tests use "eager": the same mechanics, no C++ compiler)

MEASURING, TRIAL, ON, OFF = "measuring", "trial", "on", "off"


def start(asked: bool | None, recorded: dict | None = None) -> dict[str, Any]:
    """The run's compile record: pinned on/off, or auto — continuing a resumed auto run's `recorded` one."""
    if asked is not None:
        return {"asked": "on" if asked else "off", "state": ON if asked else OFF}
    if recorded and recorded.get("asked") == "auto":
        return dict(recorded)
    return {"asked": "auto", "state": MEASURING}


def step_time(pass_s: float, first_s: float, steps: int) -> float:
    """Seconds per step of an epoch without its first step (which also carries the epoch's set-up)."""
    return (pass_s - first_s) / (steps - 1) if steps > 1 else pass_s


def next_record(record: dict, pass_s: float, first_s: float, steps: int, steps_left: int) -> dict[str, Any]:
    """The record after an epoch of `steps` steps (its pass and first step in seconds), `steps_left` to go."""
    state = record["state"]
    if state not in (MEASURING, TRIAL):
        return record
    t = step_time(pass_s, first_s, steps)
    if state == MEASURING:
        left = t * steps_left
        new = {**record, "eager_step_s": t, "eager_first_step_s": first_s}
        if left < MIN_EAGER_LEFT_S:
            return {**new, "state": OFF, "reason": f"~{left:.0f} s of eager training left, under the "
                                                   f"{MIN_EAGER_LEFT_S:.0f} s a compilation needs to pay"}
        return {**new, "state": TRIAL}
    ratio = t / record["eager_step_s"]
    new = {**record, "compiled_step_s": t, "compile_s": max(0.0, first_s - record["eager_first_step_s"]),
           "step_ratio": ratio}
    if ratio <= KEEP_RATIO:
        return {**new, "state": ON, "reason": f"a compiled step took {ratio:.2f}x an eager one"}
    return {**new, "state": OFF, "reason": f"a compiled step took {ratio:.2f}x an eager one, not under "
                                           f"{KEEP_RATIO}x"}


def after_epoch(run, pass_s: float, first_s: float, steps: int, steps_left: int) -> None:
    """Advance run.history["compile"] by the epoch just trained (rank 0 decides) and say what changed."""
    before = run.history["compile"]
    if before["state"] not in (MEASURING, TRIAL):   # decided (the same on every rank): nothing to agree on
        return
    after = distributed.broadcast_from_main(next_record(before, pass_s, first_s, steps, steps_left), run.dist)
    run.history["compile"] = after
    if after["state"] == TRIAL and before["state"] != TRIAL:
        run.log(f"compile auto: ~{after['eager_step_s'] * steps_left:.0f} s of eager training left; "
                f"the next epoch is a torch.compile trial")
    elif before["state"] == TRIAL:
        run.log(f"compile auto: {'keeping' if after['state'] == ON else 'leaving'} torch.compile: "
                f"{after['reason']} (compilation {after['compile_s']:.1f} s)")


def select_net(run) -> None:
    """Point run.net at the compiled or the eager net, as the record's state says (compiling once)."""
    if run.history["compile"]["state"] in (ON, TRIAL):
        if run.compiled_net is None:
            run.compiled_net = torch.compile(run.eager_net, backend=BACKEND)
        run.net = run.compiled_net
    else:
        run.net = run.eager_net


def first_trial_step(run, step: Callable[[], Any]) -> Any:
    """The trial epoch's first step, where compilation happens: if it fails, auto falls back to eager.

    The step is redone eagerly from the random state it started with and with no gradient left over, so a run
    whose compilation fails trains exactly as an eager one."""
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if run.device.type == "cuda" else None
    try:
        return step()
    except Exception as err:   # noqa: BLE001 (any compiler failure; the eager redo re-raises a real error)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        run.optimizer.zero_grad(set_to_none=True)
        run.history["compile"] = {**run.history["compile"], "state": OFF,
                                  "reason": f"compiling failed: {first_line(err)}"}
        run.log(f"compile auto: torch.compile failed ({first_line(err)}); training eager")
        select_net(run)
        return step()
