"""Many runs at once: a small table with `--workers 2` (killed with SIGKILL and rerun) and on a real local Ray
cluster gives the sequential rows and run files; a worker that dies fails only its run; the run directory
decides between a fresh start and a resume."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixlab.reproduce import reproduce
from mixlab.reproduce.launch import LocalPool, Sequential, attempt, make_launcher
from mixlab.train import TrainConfig
from conftest import dataset_folder, needs_dataset

FASHION = dataset_folder("fashion-mnist")       # None: the real-data tests below skip
needs_data = needs_dataset("fashion-mnist")
SRC = str(Path(__file__).resolve().parents[1] / "src")
# the two smallest models of the activator table, 2 epochs of a 100-image subset: 2 runs of a few seconds
TABLE = dict(table="activator", datasets="fashion-mnist", models="mixer_paper,activator_glu_paper", epochs=2,
             subset=100, device="cpu", data_dir=str(FASHION))
ARGV = ["reproduce", "activator", "--datasets", "fashion-mnist", "--models", "mixer_paper,activator_glu_paper",
        "--epochs", "2", "--subset", "100", "--device", "cpu", "--data-dir", str(FASHION)]
TIMING = ("train_seconds", "train_seconds_total")


def rows(out):
    data = json.loads((Path(out) / "activator.json").read_text())
    return [{k: v for k, v in r.items() if k not in TIMING} for r in data["rows"]]


def run_files(out):
    """Per run: metrics.csv without its timing columns, and the final weights' bytes."""
    files = {}
    for run in sorted(Path(out).glob("fashion-mnist/*/seed*")):
        with open(run / "metrics.csv") as f:
            metrics = [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]
        files[run.relative_to(out).as_posix()] = (metrics, (run / "last.safetensors").read_bytes())
    return files


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    report = reproduce(out=out, log=lambda m: None, **TABLE)
    assert not report["failed"] and len(report["rows"]) == 2
    return out


@needs_data
@pytest.mark.slow
def test_two_workers_killed_and_rerun_give_the_sequential_rows(sequential, tmp_path):
    out = tmp_path / "fanout"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "mixlab.cli", *ARGV, "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not list(out.glob("*/*/seed0/trainer_state.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)   # the pool's process; its workers die with it (PR_SET_PDEATHSIG)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "activator.json").exists()          # interrupted before the table was written
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 worker processes on CPU, 1 thread(s) each" in done.stderr
    assert rows(out) == rows(sequential)
    assert run_files(out) == run_files(sequential)


@needs_data
@pytest.mark.slow
def test_a_real_local_ray_cluster_gives_the_sequential_rows(sequential, tmp_path):
    ray = pytest.importorskip("ray")
    from mixlab.reproduce.launch import RayLauncher
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}})
    try:
        lines = []
        launcher = RayLauncher(address=None, cpus_per_run=1, device="cpu")
        report = reproduce(out=tmp_path / "ray", log=lines.append, launcher=launcher, **TABLE)
    finally:
        ray.shutdown()
    assert not report["failed"]
    assert any("Ray tasks on 2 CPUs / 0 GPUs, 1 CPU(s) per run" in line for line in lines)
    assert rows(tmp_path / "ray") == rows(sequential)
    assert run_files(tmp_path / "ray") == run_files(sequential)


# --- the pool's own behaviour, with a stand-in for training -------------------------------------------------
def fake_train(cfg):
    """Picklable stand-in for `train`: seed 1 kills its process, the others report their thread count."""
    import torch
    if cfg.seed == 1:
        os._exit(3)
    return {"seed": cfg.seed, "threads": torch.get_num_threads(), "device": cfg.device}


def test_a_dying_worker_fails_only_its_run_and_is_replaced(tmp_path):
    jobs = [(k, TrainConfig(model="vit_paper", data="synthetic", seed=k, out=str(tmp_path / f"r{k}"), device="cpu"))
            for k in range(3)]
    started, done = [], {}
    LocalPool(2, device="cpu", threads_per_run=1, train_fn=fake_train).map(
        jobs, started.append, lambda key, outcome: done.__setitem__(key, outcome))
    assert sorted(started) == [0, 1, 2]
    assert done[1] == ("failed", "the worker process died (exit code 3)")
    assert {k: done[k] for k in (0, 2)} == {k: ("ok", {"seed": k, "threads": 1, "device": "cpu"}) for k in (0, 2)}


def test_the_run_directory_decides_between_start_and_resume(tmp_path):
    seen = []

    def record(cfg):
        seen.append(cfg.resume)
        return {}

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"model": "vit_paper", "model_kwargs": {}}))
    for out in (tmp_path / "new", partial):
        assert attempt(record, TrainConfig(model="vit_paper", data="synthetic", out=str(out))) == ("ok", {})
    assert seen == [None, str(partial)]

    def broken(cfg):
        raise TypeError("no such thing\nsecond line")

    assert attempt(broken, TrainConfig(out=str(tmp_path / "x"))) == ("failed", "TypeError: no such thing")


def test_launcher_choices_and_their_one_line_errors(monkeypatch):
    assert isinstance(make_launcher(workers=1), Sequential)
    assert isinstance(make_launcher(workers=3, device="cpu"), LocalPool)
    assert make_launcher(workers=4, device="cpu", threads_per_run=2).describe() == \
        "4 worker processes on CPU, 2 thread(s) each"
    with pytest.raises(ValueError, match="--address is for --launcher ray"):
        make_launcher(workers=2, address="10.0.0.1:6379")
    with pytest.raises(ValueError, match="--workers must be a positive integer"):
        LocalPool(0)
    monkeypatch.setitem(sys.modules, "ray", None)   # as if Ray were not installed
    with pytest.raises(ImportError, match=r"^the Ray launcher needs Ray: pip install 'mixlab\[ray\]'$"):
        make_launcher(launcher="ray")


# --- mixlab sweep ------------------------------------------------------------------------------------------
def test_a_sweep_trains_every_point_once_and_a_rerun_reads_them(tmp_path):
    from mixlab.reproduce.sweep import parse_grid, plan_sweep, sweep
    calls = []

    def fake(cfg):
        calls.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True)
        summary = {"model": cfg.model, "completed": True, "test_top1": 10.0 * cfg.model_kwargs["depth"] + cfg.seed,
                   "best_test_top1": 50.0, "params": 1000, "train_seconds": 1.0}
        (out / "config.json").write_text(json.dumps({"model": cfg.model, "model_kwargs": cfg.model_kwargs,
                                                     "train": cfg.to_dict(), "recipe": {"epochs": cfg.epochs}}))
        (out / "summary.json").write_text(json.dumps(summary))
        return summary

    grid, model_grid = parse_grid(["lr=0.001,0.003"]), parse_grid(["depth=2,4"], "--model-grid")
    assert grid == {"lr": [0.001, 0.003]} and model_grid == {"depth": [2, 4]}
    base = TrainConfig(model="vit_paper", data="synthetic", epochs=1, model_kwargs={"embed_dim": 32})
    rows = sweep(base, grid, model_grid, seeds=2, out=tmp_path, launcher=Sequential(fake), log=lambda m: None)
    assert len(calls) == 8 and {c.model_kwargs["embed_dim"] for c in calls} == {32}
    assert [(r["lr"], r["model.depth"], r["seed"], r["test_top1"]) for r in rows[:4]] == \
        [(0.001, 2, 0, 20.0), (0.001, 2, 1, 21.0), (0.001, 4, 0, 40.0), (0.001, 4, 1, 41.0)]
    assert rows[0]["run"] == str(tmp_path / "lr=0.001,model.depth=2" / "seed0")
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"] == rows
    assert sweep(base, grid, model_grid, seeds=2, out=tmp_path, launcher=Sequential(fake), log=lambda m: None) == rows
    assert len(calls) == 8                                                  # the rerun trained nothing
    with pytest.raises(ValueError, match="unknown recipe key 'lrr'"):
        plan_sweep(base, parse_grid(["lrr=1,2"]), {}, 1, tmp_path)
    with pytest.raises(ValueError, match="--grid expects KEY=V1,V2"):
        parse_grid(["lr"])
