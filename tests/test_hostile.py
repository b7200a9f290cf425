"""Issue 26 through the real `mixlab` entry point: stale sweep rows, the run directory's lock, names that would
escape their root, damaged run files, odd file-system objects and hostile names. Each bad input ends in a
non-zero exit, exactly one `mixlab …: error:` line on stderr, no traceback, and nothing written or lost.

One tiny finished run (conftest's session `tiny_run`) is copied wherever a run is needed; the one-line cases
run as concurrent subprocesses to keep CI time small.
"""
import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mixlab.decision import decide, differences
from mixlab.rundir import RunDir, RunError
from mixlab.train import TrainConfig
from test_robustness import DATA, MIXLAB, TINY, assert_one_line_error, cli, snapshot, train_args


def tree(folder):
    """Every file under `folder` with its bytes (what 'nothing written or lost' compares)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sweep_args(out, *extra):
    return ["sweep", "--model", "mixer_paper", "--data", DATA, "--epochs", 1, "--batch-size", 32, "--device", "cpu",
            "--model-kwargs", json.dumps(TINY), "--model-grid", "depth=1", "--out", out, *extra]


@pytest.fixture
def swept(tiny_run, tmp_path):
    """A sweep folder whose one point (model.depth=1, seed 0) is the finished 1-epoch tiny run."""
    out = tmp_path / "sweep"
    shutil.copytree(tiny_run, out / "model.depth=1" / "seed0")
    return out


# --- one owner of the resume decision (decision.py) ----------------------------------------------------------
def test_a_sweep_reuses_only_the_run_it_was_asked_for(swept):
    point = swept / "model.depth=1" / "seed0"
    before = tree(point)
    same = cli(*sweep_args(swept))                                      # the same request: reused, nothing trains
    assert same.returncode == 0, same.stderr[-1500:]
    assert "| 1 | 0 |" in same.stdout and tree(point) == before
    # another request over the same folder must never be reported as its answer (exit 0 with old rows before)
    for extra, pattern in ((["--epochs", 2], r"holds another run than the one asked \(epochs=1, not 2\)"),
                           (["--subset", 48], r"subset=None, not 48"),
                           (["--set", "label_smoothing=0.1"], r"overrides=\{\}, not \{'label_smoothing': 0\.1\}")):
        done = cli(*sweep_args(swept, *extra))
        assert_one_line_error(done, pattern + r".*--overwrite")
        assert tree(point) == before


def test_differences_is_the_one_comparison(tiny_run):
    recorded = RunDir(tiny_run).read_config(need=("train", "recipe"))
    asked = TrainConfig(model="mixer_paper", data=DATA, epochs=1, batch_size=32, device="cpu",
                        model_kwargs=dict(TINY))
    assert differences(asked, recorded) == []
    assert differences(TrainConfig(**{**asked.to_dict(), "subset": 48, "epochs": 3}), recorded) == \
        [("subset", None, 48), ("epochs", 1, 3)]
    # a continuation compares only what it sets, recipe values against the recorded resolved recipe
    lr = recorded["recipe"]["lr"]
    assert differences(TrainConfig(resume=str(tiny_run), lr=lr), recorded) == []
    assert differences(TrainConfig(resume=str(tiny_run), lr=lr * 2), recorded) == [("lr", lr, lr * 2)]
    assert decide(RunDir(tiny_run), asked, reuse=True).action == "reuse"
    assert decide(RunDir(tiny_run), TrainConfig(resume=str(tiny_run), epochs=2)).action == "resume"
    with pytest.raises(RunError, match="holds a finished run"):
        decide(RunDir(tiny_run), asked)                                   # plain train never reuses silently


def test_non_finite_weights_are_a_damaged_run_for_every_verb(tiny_run, tmp_path):
    # before: `eval` exited 0 with "loss nan", `predict` printed nan probabilities
    run = shutil.copytree(tiny_run, tmp_path / "nan")
    weights = load_file(run / "best.safetensors")
    next(iter(weights.values())).view(-1)[0] = float("nan")
    save_file(weights, run / "best.safetensors")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "x.png")
    before = tree(run)
    cases = [["eval", "--run", run, "--device", "cpu"], ["predict", "--run", run, tmp_path / "x.png"],
             ["export", "--run", run, "--onnx", tmp_path / "x.onnx"],
             ["analyze", "attention-correlation", "--run", run, "--out", tmp_path / "an"]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda argv: cli(*argv), cases))
    for done in results:
        assert_one_line_error(done, r"best.safetensors holds non-finite weights .*damaged")
    assert tree(run) == before and not (tmp_path / "x.onnx").exists() and not (tmp_path / "an").exists()
