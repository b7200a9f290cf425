"""The run's randomness: the per-epoch seed of dropout / drop-path, and the RNG states of the trainer state
(`trainer_state.pt`, written and read by `RunDir`).

The trainer state is the commit point of an epoch: model, optimizer, EMA, scaler, epoch, history and the
torch / numpy / python RNG states, written first, so every other file of the run directory (weights,
metrics.csv, curves) is derived from it and a `kill -9` between writes can never leave the directory
inconsistent. Only tensors, numbers, strings, lists and dicts go in, so `torch.load(weights_only=True)`
reads it back and no pickle code ever runs.
"""
import random

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Dropout / drop-path randomness of one epoch on one rank, independent of what ran before."""
    return (int(seed) * 1_000_003 + int(epoch)) * 1_009 + int(rank)


def rng_state():
    """RNG states in weights_only-loadable form (numpy's key array becomes a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "state": list(py_state), "gauss": py_gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
