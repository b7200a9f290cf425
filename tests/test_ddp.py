"""DDP with real torchrun processes (gloo, CPU): 2 ranks × batch B follow the same loss curve as one process
with batch 2B, and only rank 0 writes the run directory."""
import csv
import json
import os
import subprocess
import sys

import pytest

from mixlab.train import TrainConfig, train

MODEL_KWARGS = {"depth": 2, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}   # dropout off
ARGS = dict(model="vit_paper", data="synthetic:256x3x16x16:4", epochs=2, batch_size=32, seed=3, device="cpu")
RTOL = 1e-4   # relative, per step: only the order of the gradient all-reduce sums differs


def step_losses(run):
    with open(os.path.join(run, "steps.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_two_rank_torchrun_matches_one_process_with_the_same_global_batch(tmp_path):
    single = train(TrainConfig(out=str(tmp_path / "single"), model_kwargs=dict(MODEL_KWARGS), **ARGS), log=None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mixlab.cli",
           "train", "--model", ARGS["model"], "--data", ARGS["data"], "--epochs", str(ARGS["epochs"]),
           "--batch-size", str(ARGS["batch_size"]), "--seed", str(ARGS["seed"]), "--device", "cpu",
           "--out", str(tmp_path / "ddp"), "--model-kwargs", json.dumps(MODEL_KWARGS)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = step_losses(tmp_path / "single"), step_losses(tmp_path / "ddp")
    assert len(a) == len(b) == 2 * 256 // 32
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert worst < RTOL, f"largest relative per-step loss difference {worst:.2e}"
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["test_images"] == single["test_images"]
    assert abs(ddp["test_top1"] - single["test_top1"]) <= 100.0 / single["test_images"] + 1e-9
    # rank 0 alone printed the progress lines and wrote the files
    assert done.stdout.count("epoch   2/2") == 1
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.name.startswith(".")) == []
