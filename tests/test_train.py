"""Training engine: recipes, schedules, EMA, learning on synthetic data, run directory, NaN handling, and
bit-exact resume after SIGKILL (CPU)."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import mixlab
from mixlab.cli import main as cli_main
from mixlab.train import (TrainConfig, TrainingDiverged, auto_recipe_name, evaluate, list_recipes, load_recipe,
                          lr_at, train)
from mixlab.train.config import resolve
from mixlab.train.ema import ModelEma

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}
DATA = "synthetic:384x1x16x16:4"


def tiny_config(tmp_path, name="run", **kw):
    base = dict(model="mixer_paper", data=DATA, epochs=3, batch_size=32, out=str(tmp_path / name),
                model_kwargs=dict(TINY), device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def read_metrics(run):
    with open(os.path.join(run, "metrics.csv")) as f:
        return list(csv.DictReader(f))


# --- recipes ------------------------------------------------------------------------------------------
def test_recipes_are_named_versioned_and_faithful():
    assert list_recipes() == ["ddpm", "demo", "dianet", "mixlab", "paper", "speed", "strong"]
    for name in list_recipes():
        r = load_recipe(name)
        assert r.name == name and isinstance(r.version, int) and r.description and r.source
    paper = load_recipe("paper")
    assert (paper.optimizer, paper.lr, paper.weight_decay, paper.batch_size, paper.epochs, paper.schedule,
            paper.normalize, paper.test_augment, paper.precision, paper.drop_last) == \
        ("adam", 1e-3, 0.0, 128, 100, "constant", [0.5, 0.5], False, "fp32", False)
    dianet = load_recipe("dianet")
    assert (dianet.optimizer, dianet.lr, dianet.momentum, dianet.weight_decay, dianet.epochs, dianet.milestones,
            dianet.gamma, dianet.precision, dianet.drop_last) == ("sgd", 0.1, 0.9, 1e-4, 180, (60, 120), 0.1,
                                                                  "fp32", False)
    assert (load_recipe("mixlab").precision, load_recipe("mixlab").drop_last) == ("auto", True)
    assert auto_recipe_name("ninformer_paper") == "paper"
    assert auto_recipe_name("dia_resnet164") == "dianet" and auto_recipe_name("wrn52_4") == "dianet"
    assert auto_recipe_name("vit_tiny") == "mixlab"
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("nope")


def test_auto_precision_is_bf16_on_cuda_fp32_on_cpu_and_the_run_records_what_it_resolved_to(tmp_path):
    from mixlab.train.precision import Precision, resolve_precision
    assert (resolve_precision("auto", "cpu"), resolve_precision("auto", "cuda")) == ("fp32", "bf16")
    assert resolve_precision("fp16", "cpu") == "fp16" and Precision("auto", "cpu").autocast().__class__.__name__ \
        == "nullcontext"
    summary = train(tiny_config(tmp_path, epochs=1, overrides={"precision": "auto"}), log=lambda m: None)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["precision"] == config["recipe"]["precision"] == "fp32"   # a resume reads fp32, never 'auto'


def test_resolve_scales_lr_with_batch_and_lets_flags_override():
    hp, _ = resolve(TrainConfig(model="vit_tiny", data="synthetic", batch_size=128))
    assert hp.name == "mixlab" and hp.lr == pytest.approx(1e-3 * 128 / 256)
    hp, _ = resolve(TrainConfig(model="vit_tiny", data="synthetic", recipe="paper", lr=5e-4, epochs=7,
                                overrides={"label_smoothing": 0.2}))
    assert (hp.lr, hp.epochs, hp.batch_size, hp.label_smoothing) == (5e-4, 7, 128, 0.2)
    with pytest.raises(ValueError, match="unknown recipe key"):
        resolve(TrainConfig(model="vit_tiny", data="synthetic", overrides={"warmup": 3}))


def test_batch_larger_than_a_small_subset_is_capped_before_lr_scaling(tmp_path):
    hp, note = resolve(TrainConfig(model="vit_tiny", data="synthetic"), train_size=300, world_size=2)
    assert hp.batch_size == 300 and note == "batch 512 is larger than the 300 training images: using batch 300"
    assert hp.lr == pytest.approx(1e-3 * 300 / 256)
    s = train(tiny_config(tmp_path, epochs=1, batch_size=1000))     # 384 synthetic training images
    assert s["completed"] and s["batch_size"] == 384


def test_lr_schedules():
    const = load_recipe("paper")
    assert all(lr_at(s, const, 1e-3, 10, 5) == 1e-3 for s in range(50))
    multi = load_recipe("dianet")
    assert lr_at(59 * 10 + 9, multi, 0.1, 180, 10) == pytest.approx(0.1)
    assert lr_at(60 * 10, multi, 0.1, 180, 10) == pytest.approx(0.01)
    assert lr_at(120 * 10, multi, 0.1, 180, 10) == pytest.approx(0.001)
    cos = load_recipe("mixlab").replace(warmup_epochs=2, min_lr=1e-5)
    lrs = [lr_at(s, cos, 1e-3, 10, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3 / 20) and lrs[19] == pytest.approx(1e-3)        # linear warm-up
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))                              # then cosine decay
    mid = 20 + 40
    assert lrs[mid] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 40 / 80)))
    # warm-up is capped at a fifth of the run
    assert lr_at(1, cos.replace(warmup_epochs=5), 1e-3, 2, 10) == pytest.approx(1e-3 * 2 / 4)


def test_optimizers_follow_the_recipes():
    from mixlab.train.engine import build_optimizer
    model = mixlab.create_model("vit_paper", num_classes=4, img_size=16, **TINY)
    sgd = build_optimizer(model, resolve(TrainConfig(model="resnet164", data="synthetic"))[0])
    assert type(sgd) is torch.optim.SGD and (sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (0.9, False)
    assert all(g["weight_decay"] == 1e-4 for g in sgd.param_groups)   # DIANet decays every parameter
    assert sum(len(g["params"]) for g in sgd.param_groups) == len(list(model.parameters()))
    adamw = build_optimizer(model, resolve(TrainConfig(model="vit_tiny", data="synthetic"))[0])
    assert type(adamw) is torch.optim.AdamW
    decayed = {id(p) for g in adamw.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["pos_embed"]) not in decayed and id(named["head.bias"]) not in decayed
    assert id(named["head.weight"]) in decayed
    assert type(build_optimizer(model, load_recipe("paper"))) is torch.optim.Adam


def test_ema_follows_the_equation():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))   # changes the BatchNorm running statistics
    ema.update(model, step=1000)
    new = ema.module.state_dict()
    for k, v in model.state_dict().items():
        if k in dict(model.named_parameters()):
            assert torch.allclose(new[k], 0.9 * old[k] + 0.1 * v)
        else:
            assert torch.equal(new[k], v)   # buffers are copied
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**6) == 0.9
    with pytest.raises(ValueError):
        ModelEma(model, decay=1.5)


# --- training -----------------------------------------------------------------------------------------
def test_train_learns_and_writes_a_complete_run_directory(tmp_path):
    s = train(tiny_config(tmp_path, epochs=4, lr=3e-3))
    run = tmp_path / "run"
    assert s["completed"] and s["epochs"] == 4 and s["test_top1"] > 70.0   # 4 classes: chance is 25%
    for name in ("config.json", "metrics.csv", "steps.csv", "summary.json", "last.safetensors",
                 "best.safetensors", "trainer_state.pt", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["test_top1"]) == pytest.approx(s["test_top1"])
    assert json.loads((run / "summary.json").read_text())["best_test_top1"] == max(float(r["test_top1"]) for r in rows)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "mixer_paper" and config["in_chans"] == 1 and config["img_size"] == 16
    assert config["mean"] == [0.5] and config["recipe"]["name"] == "paper" and config["train"]["batch_size"] == 32
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    assert state["epoch"] == 4 and len(state["history"]["step_loss"]) == 4 * (384 // 32)
    # the saved weights reproduce the reported accuracy through the public loader
    model = mixlab.load(run, weights="last.safetensors")
    from mixlab.data import load_dataset
    test = load_dataset(DATA, split="test")
    result = evaluate(model, test, torch.device("cpu"), config["mean"], config["std"])
    assert result["top1"] == pytest.approx(s["test_top1"])


def test_ema_run_evaluates_and_saves_the_average(tmp_path):
    s = train(tiny_config(tmp_path, epochs=2, overrides={"ema_decay": 0.9}))
    state = torch.load(tmp_path / "run" / "trainer_state.pt", weights_only=True)
    last = load_file(str(tmp_path / "run" / "last.safetensors"))
    assert all(torch.equal(last[k], state["ema"][k]) for k in last)
    assert any(not torch.equal(state["model"][k], state["ema"][k]) for k in last)
    assert s["completed"]


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import mixlab.train.classification as tasks
    train(tiny_config(tmp_path, epochs=1))
    good = (tmp_path / "run" / "last.safetensors").read_bytes()
    calls = {"n": 0}
    real = tasks.F.cross_entropy

    class PoisonedF:
        @staticmethod
        def cross_entropy(*a, **k):   # step 3 of epoch 2 returns inf
            calls["n"] += 1
            loss = real(*a, **k)
            return loss * float("inf") if calls["n"] == 3 else loss

    monkeypatch.setattr(tasks, "F", PoisonedF)
    with pytest.raises(TrainingDiverged) as err:
        train(tiny_config(tmp_path, epochs=2, out=None, resume=str(tmp_path / "run")))
    msg = str(err.value)
    assert msg == (f"the training loss became inf at epoch 2 step 3; the last good checkpoint is epoch 1 in "
                   f"{tmp_path / 'run'}")
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == good
    assert torch.load(tmp_path / "run" / "trainer_state.pt", weights_only=True)["epoch"] == 1
    assert len(read_metrics(tmp_path / "run")) == 1


def test_exploding_lr_is_reported_not_saved(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"(loss|weights) became (nan|non-finite).* epoch 1.*; no checkpoint"):
        train(tiny_config(tmp_path, epochs=2, lr=1e30))
    assert not (tmp_path / "run" / "trainer_state.pt").exists()


def test_resume_checks_settings_and_reprints_a_completed_run(tmp_path, capsys):
    s = train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="trained with lr=0.001, not 0.5"):
        train(TrainConfig(resume=str(tmp_path / "run"), lr=0.5))
    mtime = (tmp_path / "run" / "trainer_state.pt").stat().st_mtime_ns
    again = train(TrainConfig(resume=str(tmp_path / "run")))
    assert again == json.loads(json.dumps(s)) and "already complete" in capsys.readouterr().out
    assert (tmp_path / "run" / "trainer_state.pt").stat().st_mtime_ns == mtime
    with pytest.raises(FileNotFoundError):
        train(TrainConfig(resume=str(tmp_path / "missing")))


def test_cli_train_and_eval(tmp_path, capsys):
    run = tmp_path / "cli"
    assert cli_main(["train", "--model", "mixer_paper", "--data", DATA, "--epochs", "1", "--batch-size", "64",
                     "--device", "cpu", "--out", str(run), "--model-kwargs", json.dumps(TINY)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['test_top1']:.2f}" in out.splitlines()[-1] and str(run) in out
    assert cli_main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    assert f"top-1 {summary['test_top1']:.2f}%" in capsys.readouterr().out   # the default: last.safetensors
    assert cli_main(["train", "--model", "vit_paper", "--data", DATA, "--recipe", "bogus", "--out",
                     str(tmp_path / "x")]) == 1
    assert "unknown recipe 'bogus'" in capsys.readouterr().err


def test_paper_test_augment_quirk_is_deterministic_and_differs_from_clean_eval():
    from mixlab.data import load_dataset
    test = load_dataset("synthetic:64x3x16x16:4", split="test")
    torch.manual_seed(0)
    model = mixlab.create_model("vit_paper", num_classes=4, img_size=16, **TINY)
    cpu = torch.device("cpu")
    clean = evaluate(model, test, cpu, [0.5] * 3, [0.5] * 3)
    quirk = [evaluate(model, test, cpu, [0.5] * 3, [0.5] * 3, augment=(4, True, 7)) for _ in range(2)]
    assert quirk[0] == quirk[1] and quirk[0]["loss"] != clean["loss"]


# --- kill -9 and resume -------------------------------------------------------------------------------
def _train_cmd(out, *extra):
    return [sys.executable, "-m", "mixlab.cli", "train", "--model", "ninformer_paper", "--data",
            "synthetic:768x1x16x16:4", "--epochs", "4", "--batch-size", "32", "--device", "cpu", "--out", str(out),
            "--model-kwargs", json.dumps({"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64}), *extra]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tmp_path):
    """Dropout stays on (p=0.5, the paper config) so the RNG handling is exercised too."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    subprocess.run(_train_cmd(tmp_path / "a"), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "trainer_state.pt"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)   # right after the first commit, while derived files may be half done
    assert proc.wait() == -signal.SIGKILL
    assert torch.load(state, weights_only=True)["epoch"] < 4
    subprocess.run(_train_cmd(tmp_path / "b", "--resume", str(tmp_path / "b")), check=True, env=env,
                   capture_output=True, timeout=300)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [(r["epoch"], r["train_loss"], r["test_loss"], r["test_top1"]) for r in a] == \
           [(r["epoch"], r["train_loss"], r["test_loss"], r["test_top1"]) for r in b]
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "steps.csv").read_text() == (tmp_path / "b" / "steps.csv").read_text()


# --- no silent collapse -----------------------------------------------------------------------------------
def test_a_run_that_falls_to_chance_is_flagged_loudly(tmp_path, capsys):
    """A deliberately too-large learning rate: ×100 at epoch 3 of a run that had reached 84 % on 4 classes."""
    s = train(tiny_config(tmp_path, epochs=4, lr=3e-3,
                          overrides={"schedule": "multistep", "milestones": [3], "gamma": 100.0}))
    rows = read_metrics(tmp_path / "run")
    assert float(rows[2]["test_top1"]) > 70.0 and float(rows[3]["test_top1"]) <= 26.0   # learned, then chance
    assert s["completed"] and s["collapsed"] and s["collapse_reason"].startswith("test top-1 fell to")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["collapsed"] is True
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and "mixer_paper collapsed: test top-1 fell to" in warnings[0]


def test_collapse_rules():
    from mixlab.train.guards import collapse_status

    def rows(*pairs):
        return [{"train_loss": loss, "test_top1": top1} for loss, top1 in pairs]

    ln4 = math.log(4)
    assert collapse_status(rows((1.0, 60.0), (0.8, 70.0)), 4) is None                  # learning
    assert "fell to 25.00%" in collapse_status(rows((0.9, 60.0), (3.0, 25.0)), 4)      # learned, then chance
    assert collapse_status(rows((0.9, 28.0), (1.3, 25.5)), 4) is None                  # never clearly above chance
    stuck = rows((ln4, 25.0), (ln4 * 1.01, 25.5))
    assert "sits at ln(4)" in collapse_status(stuck, 4, steps_done=500)
    assert collapse_status(stuck, 4, steps_done=20) is None                              # a smoke run has not started
    assert collapse_status(rows((4.6, 1.0), (4.59, 1.2)), 100, steps_done=1000).startswith("the training loss")
    assert collapse_status(rows((1.0, 9.0), (0.9, 31.0)), 10) is None                   # 10 classes, above chance
