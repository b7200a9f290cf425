"""The UNets through mixlab's engine (the diffusion task): training lowers the test loss and writes the run
directory with sample grids, `mixlab.load` / `eval` / `sample` use it, `kill -9` then resume is bit-exact,
two torchrun ranks follow one process, and `mixlab reproduce dia-diffusion` runs end to end on a tiny budget."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import mixlab
from mixlab.cli import main
from mixlab.train import TrainConfig, auto_recipe_name, load_recipe, train
from mixlab.train.recipes import Recipe
from conftest import dataset_folder, needs_dataset

pytest.importorskip("diffusers")
pytest.importorskip("torchmetrics")

FASHION = dataset_folder("fashion-mnist")       # None: the real-data test below skips
# Two levels of 8 and 16 channels: the UNet's structure (SE/DIA per block, shared LSTM per level) at 16 px.
TINY = {"base_chans": 8, "chan_mult": [1, 2], "norm_groups": 2}
SYNTH = "synthetic:64x1x16x16:4"
# Short runs: no warm-up, a constant lr (min_lr = lr), 3 reverse steps per grid, fp32 (the CPU precision: bf16
# autocast is slower on CPUs, docs/BENCHMARKS.md).
FAST = {"warmup_epochs": 0.0, "min_lr": 2e-3, "sample_steps": 3, "sample_count": 4, "precision": "fp32"}


def tiny_config(out, model="dia_unet_tiny", **kw):
    args = dict(model=model, data=SYNTH, epochs=3, batch_size=16, lr=2e-3, seed=1, device="cpu", out=str(out),
                model_kwargs=dict(TINY), overrides=dict(FAST, sample_every=2))
    args.update(kw)
    return TrainConfig(**args)


def read_metrics(run):
    with open(Path(run) / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion") / "run"
    return out, train(tiny_config(out), log=None)


def test_the_unets_pick_the_ddpm_recipe():
    ddpm = load_recipe("ddpm")
    assert auto_recipe_name("dia_unet_small") == auto_recipe_name("unet_tiny") == "ddpm"
    assert (ddpm.optimizer, ddpm.lr, ddpm.batch_size, ddpm.grad_clip, ddpm.ema_decay, ddpm.weight_decay) == \
        ("adam", 2e-4, 128, 1.0, 0.9999, 0.0)
    assert (ddpm.normalize, ddpm.crop_padding, ddpm.flip, ddpm.drop_last) == ([0.5, 0.5], 0, True, True)
    assert (ddpm.diffusion_timesteps, ddpm.beta_schedule, ddpm.beta_start, ddpm.beta_end) == (1000, "linear", 1e-4, 0.02)
    assert ddpm.schedule == "cosine" and ddpm.min_lr == ddpm.lr     # warm-up, then a constant lr
    assert ddpm.precision == "auto"     # bf16 on CUDA, fp32 on a CPU (slower in bf16, docs/diffusion.md)
    from mixlab.diffusion.ddpm import BETA_SCHEDULES
    assert Recipe.field_info("beta_schedule").metadata["choices"] == BETA_SCHEDULES
    for key, value, message in [("beta_schedule", "cosine", "must be one of"), ("sample_every", 0, "must be at least 1"),
                                ("sample_steps", 0, "must be at least 1"), ("diffusion_timesteps", 1.5, "must be an integer")]:
        with pytest.raises(ValueError, match=f"{key} {message}"):
            ddpm.replace(**{key: value})


def test_the_unet_trains_through_the_engine(trained):
    out, summary = trained
    rows = read_metrics(out)
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "test_loss", "seconds", "train_pass_seconds"]
    losses = [float(r["test_loss"]) for r in rows]
    assert losses[0] < 1.05 and losses[-1] < 0.8 * losses[0], losses           # starts at E ε² ≈ 1 and falls
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    with open(out / "steps.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 64 // 16
    assert summary["completed"] and summary["recipe"] == "ddpm" and summary["test_loss"] == pytest.approx(losses[-1])
    assert summary["best_test_loss"] == min(losses) and summary["best_epoch"] == 1 + losses.index(min(losses))
    assert summary["samples"] == "samples/epoch_003.png" and "test_top1" not in summary
    assert summary["sample_steps"] == 3 and summary["diffusion_timesteps"] == 1000
    # grids at every 2nd epoch and the last: 4 tiles of 16 px, 2 a row, 2 px black padding
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_002.png", "epoch_003.png"]
    grid = np.asarray(Image.open(out / "samples" / "epoch_003.png"))
    assert grid.shape == (2 + 2 * 18, 2 + 2 * 18) and grid[:2].max() == 0
    config = json.loads((out / "config.json").read_text())
    assert config["diffusion"]["num_train_timesteps"] == 1000 and config["diffusion"]["sample_steps"] == 3
    assert config["model_kwargs"]["num_classes"] == 0 and config["recipe"]["normalize"] == [0.5, 0.5]
    # mixlab.load rebuilds the denoiser with the final (EMA) weights
    model = mixlab.load(out, weights="last.safetensors")
    saved = load_file(str(out / "last.safetensors"))
    assert type(model).__name__ == "UNet" and model.dia is not None and model.in_chans == 1 and model.img_size == 16
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_eval_and_sample_commands(trained, tmp_path, capsys):
    out, summary = trained
    assert main(["eval", "--run", str(out), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    # the default weights are the final ones: without --validation the best epoch was the test loss's choice
    assert line.startswith("dia_unet_tiny last.safetensors on synthetic test") and "top-1" not in line
    assert float(line.rsplit("loss ", 1)[1]) == pytest.approx(summary["test_loss"], abs=5e-5)
    assert main(["eval", "--run", str(out), "--weights", "best", "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("dia_unet_tiny best.safetensors (its epoch chosen on the test split) on synthetic test")
    assert float(line.rsplit("loss ", 1)[1]) == pytest.approx(summary["best_test_loss"], abs=5e-5)
    from mixlab.train import evaluate_run
    r = evaluate_run(out, weights="last", device="cpu")      # the number training reported, recomputed
    assert r["top1"] is None and r["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)

    args = ["sample", "--run", str(out), "--n", "6", "--steps", "4", "--device", "cpu"]
    assert main(args + ["--seed", "5", "--out", str(tmp_path / "a.png")]) == 0
    assert "wrote 6 samples of dia_unet_tiny (last.safetensors, 4 reverse steps, seed 5" in capsys.readouterr().out
    assert main(args + ["--seed", "5", "--out", str(tmp_path / "b.png")]) == 0
    assert main(args + ["--seed", "6", "--out", str(tmp_path / "c.png")]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "abc")
    assert a.shape == (2 + 2 * 18, 2 + 3 * 18) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert main(["sample", "--run", str(out), "--n", "2", "--device", "cpu"]) == 0   # the recipe's 3 steps
    assert (out / "samples" / "sample-seed0.png").is_file()
    # the run's seed and grid size give back the engine's last grid, drawn from the same final EMA weights
    assert main(["sample", "--run", str(out), "--n", "4", "--seed", "1", "--out", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").read_bytes() == (out / "samples" / "epoch_003.png").read_bytes()
    capsys.readouterr()
    # one-line refusals: a classifier's run, a missing run, a non-PNG output
    mixlab.save(mixlab.create_model("vit_paper", depth=1), tmp_path / "clf", weights_name="last.safetensors")
    for bad, message in [(["--run", str(tmp_path / "clf")], "holds vit_paper, a classification model"),
                         (["--run", str(tmp_path / "nowhere")], "no run directory"),
                         (["--run", str(out), "--out", str(tmp_path / "x.jpg")], "must be a .png file")]:
        assert main(["sample", *bad]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_diffusion_needs_pixels_in_minus_one_one(tmp_path):
    with pytest.raises(ValueError, match=r"normalize must be \[0.5, 0.5\]"):
        train(tiny_config(tmp_path / "run", overrides=dict(FAST, normalize="dataset")), log=None)
    assert not (tmp_path / "run" / "config.json").exists()


def test_resume_draws_a_grid_the_kill_cut_off(tmp_path):
    """The grid is written after the epoch's commit; a run resumed from that commit draws it again, the same
    image (the same EMA weights, seed and reverse steps)."""
    config = tiny_config(tmp_path / "run", model="unet_tiny", epochs=1, overrides=dict(FAST, sample_every=1))
    train(config, log=None)
    grid = tmp_path / "run" / "samples" / "epoch_001.png"
    drawn = grid.read_bytes()
    grid.unlink()                                       # as if killed between the commit and the grid
    train(TrainConfig(resume=str(tmp_path / "run"), epochs=2, device="cpu"), log=None)
    assert grid.read_bytes() == drawn and (tmp_path / "run" / "samples" / "epoch_002.png").is_file()


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "mixlab.cli", "train", "--model", "se_unet_tiny", "--data", SYNTH, "--epochs", "3",
            "--batch-size", "16", "--lr", "2e-3", "--seed", "2", "--device", "cpu", "--out", str(out),
            "--model-kwargs", json.dumps(TINY), *[a for k, v in dict(FAST, sample_every=1).items()
                                                  for a in ("--set", f"{k}={v}")], *extra]


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    """Dropout 0.1 stays on (the UNet's default), so the per-epoch dropout seeding is exercised; a grid every
    epoch, so the grid a kill may have cut off is written again on resume, the same bytes."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    subprocess.run(_train_cmd(tmp_path / "a"), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "trainer_state.pt"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)   # right after the first commit, before (or while) its grid is drawn
    assert proc.wait() == -signal.SIGKILL
    assert torch.load(state, weights_only=True)["epoch"] < 3
    subprocess.run(_train_cmd(tmp_path / "b", "--resume", str(tmp_path / "b")), check=True, env=env,
                   capture_output=True, timeout=300)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [(r["epoch"], r["train_loss"], r["test_loss"]) for r in a] == \
           [(r["epoch"], r["train_loss"], r["test_loss"]) for r in b]
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "steps.csv").read_text() == (tmp_path / "b" / "steps.csv").read_text()
    for epoch in (1, 2, 3):
        grid = f"samples/epoch_{epoch:03d}.png"
        assert (tmp_path / "a" / grid).read_bytes() == (tmp_path / "b" / grid).read_bytes()


@pytest.mark.slow
def test_two_rank_torchrun_matches_one_process_with_the_same_global_batch(tmp_path):
    """Every rank draws the global batch's (t, ε) from the step's generator and keeps its loader positions, so
    both runs noise each image identically: the only difference is the order of floating-point sums (the
    gradient all-reduce, the loss of 2 × 16 images vs 32), so the per-step losses agree to rounding: 7e-8
    relative at worst over the 4 Adam steps when measured, checked at 1e-5. Dropout off: its masks are drawn
    per rank."""
    kwargs = dict(TINY, drop_rate=0.0)
    single = train(tiny_config(tmp_path / "single", model="unet_tiny", batch_size=32, epochs=2,
                               model_kwargs=kwargs, overrides=FAST), log=None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mixlab.cli",
           "train", "--model", "unet_tiny", "--data", SYNTH, "--epochs", "2", "--batch-size", "32", "--lr", "2e-3",
           "--seed", "1", "--device", "cpu", "--out", str(tmp_path / "ddp"), "--model-kwargs", json.dumps(kwargs),
           *[a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    def step_losses(run):
        with open(run / "steps.csv") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]

    a, b = step_losses(tmp_path / "single"), step_losses(tmp_path / "ddp")
    assert len(a) == len(b) == 2 * 64 // 32
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert worst < 1e-5, f"largest relative per-step loss difference {worst:.2e}"
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)
    assert (tmp_path / "ddp" / "samples" / "epoch_002.png").is_file()
    assert done.stdout.count("epoch   2/2") == 1                              # rank 0 alone speaks


def test_fid_feature_space_plan(tmp_path, monkeypatch):
    from mixlab.diffusion import inception_status
    from mixlab.reproduce.diffusion import classifier_runs, fid_plan

    found = [("fashion-mnist", "fashion-mnist")]
    plan = fid_plan(tmp_path, found, "auto", inception_status=lambda: (True, "/w.pth", "Inception weights from /w.pth"))
    assert plan == {"fashion-mnist": {"space": "inception", "weights": "/w.pth", "why": "Inception weights from /w.pth"}}
    offline = lambda: (False, None, "torch-fidelity is not installed")   # noqa: E731
    plan = fid_plan(tmp_path, found, "auto", inception_status=offline)["fashion-mnist"]
    assert plan["space"] == "classifier" and plan["why"] == "Inception FID unavailable (torch-fidelity is not installed)"
    assert plan["classifier"] == str(tmp_path / "fashion-mnist" / "_fid_classifier") and plan["status"] == "new"
    entry, = classifier_runs({"fashion-mnist": plan})
    assert (entry["model"], entry["model_kwargs"], entry["epochs"], entry["role"]) == \
        ("resnet164", {"depth": 20}, 15, "FID feature space")
    with pytest.raises(ValueError, match="Inception FID cannot run here: torch-fidelity is not installed"):
        fid_plan(tmp_path, found, "inception", inception_status=offline)
    with pytest.raises(ValueError, match="fid must be one of"):
        fid_plan(tmp_path, found, "clip")
    # inception_status never downloads: weights from the environment, torch's hub cache, or a network
    monkeypatch.setitem(sys.modules, "torch_fidelity", type(sys)("torch_fidelity"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MIXLAB_INCEPTION_WEIGHTS", raising=False)
    usable, path, why = inception_status(online=lambda: False)
    assert not usable and path is None and "cannot be reached" in why
    assert inception_status(online=lambda: True)[:2] == (True, None)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"w")
    assert inception_status(online=lambda: False)[:2] == (True, str(cached))
    monkeypatch.setenv("MIXLAB_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    assert inception_status()[0] is False


@needs_dataset("fashion-mnist")
def test_dia_diffusion_table_end_to_end_on_a_tiny_budget(tmp_path, monkeypatch, capsys):
    """Two tiny UNets, 1 epoch (2 steps) on 32 Fashion-MNIST images, FID feature classifier and Fréchet
    distances of 32 samples (2 reverse steps) against the 32 test images; offline, so no Inception."""
    from mixlab.reproduce import reproduce
    monkeypatch.setenv("MIXLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))          # no cached Inception weights
    calls = []

    def counting_train(cfg):
        calls.append((cfg.model, cfg.data))
        return train(cfg, log=None)

    overrides = {"sample_steps": 2, "sample_count": 4, "precision": "fp32"}
    kw = dict(datasets="fashion-mnist", models="unet_tiny,dia_unet_tiny", epochs=1, subset=32, batch_size=16,
              device="cpu", data_dir=str(FASHION), out=tmp_path / "t", overrides=overrides, log=lambda m: None,
              train_fn=counting_train)
    plan = reproduce("dia-diffusion", dry_run=True, **kw)
    assert [(r["model"], r["status"]) for r in plan["runs"]] == [("unet_tiny", "new"), ("dia_unet_tiny", "new"),
                                                                 ("resnet164", "new")]
    report = reproduce("dia-diffusion", **kw)
    assert calls == [("unet_tiny", "fashion-mnist"), ("dia_unet_tiny", "fashion-mnist"), ("resnet164", "fashion-mnist")]
    assert report["failed"] == [] and [r["model"] for r in report["rows"]] == ["unet_tiny", "dia_unet_tiny"]
    for row in report["rows"]:
        expected_params = sum(p.numel() for p in mixlab.create_model(row["model"], in_chans=1, img_size=28).parameters())
        assert row["params"] == expected_params and row["published"] is None
        assert row["fid_space"] == "classifier" and row["fid_mean"] > 0 and row["fid_std"] is None
        assert row["feature_space"] == "mixlab:resnet164 trained on fashion-mnist, 256-d pre-logits"
        assert (row["fid_samples"], row["fid_real"], row["sample_steps"]) == (32, 32, 2)
        summary = json.loads((tmp_path / "t" / "fashion-mnist" / row["model"] / "seed0" / "summary.json").read_text())
        assert row["test_loss_mean"] == pytest.approx(summary["test_loss"], abs=1e-6)
        assert row["budget"] and row["epochs"] == 1 and row["recipe_epochs"] == 100
    # two optimiser steps give the residual branches weights, so DIA's gates change the samples
    assert report["rows"][0]["fid_mean"] != report["rows"][1]["fid_mean"]
    md = (tmp_path / "t" / "dia-diffusion.md").read_text()
    assert "Inception FID unavailable (torch-fidelity is not installed" in md or "cannot be reached" in md
    assert "this Fréchet distance is not an FID" in md and "| dia_unet_tiny | Fashion-MNIST |" in md
    assert "dia_unet_tiny below unet_tiny on Fashion-MNIST" in md
    assert "not retrieved" in md and report["claims"][0]["metric"] == "fid"
    # a rerun trains nothing and samples nothing: the same rows from the run directories and fid.json caches
    messages = []
    again = reproduce("dia-diffusion", **dict(kw, log=messages.append))
    assert len(calls) == 3 and again["rows"] == report["rows"]
    assert not any("sampling" in m or "training" in m for m in messages)
    assert main(["reproduce", "dia-diffusion", "--datasets", "fashion-mnist", "--models", "unet_tiny,dia_unet_tiny",
                 "--epochs", "1", "--subset", "32", "--data-dir", str(FASHION), "--out", str(tmp_path / "t"),
                 *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")], "--dry-run"]) == 0
    assert "3 runs: 0 to train (0 epochs), 0 to resume, 3 done" in capsys.readouterr().out
