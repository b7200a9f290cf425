"""`mixlab compare`: budgets laid under the schedule, the validation split, --match, file mixers, the seed
statistics against scipy, and a rerun that reuses finished runs."""
import json
import math

import pytest
import torch

from mixlab.cli import main
from mixlab.compare import (CompareConfig, budget_steps, describe, match_width, parse_budget, run_compare,
                            skeleton_args, welch)
from mixlab.train.data_setup import validation_indices
from mixlab.train.recipes import load_recipe
from mixlab.train.schedule import lr_at, warmup_steps

GOOD = '''
from torch import nn
class Scale(nn.Module):
    needs_grid = False
    def __init__(self, dim, num_tokens=None, grid=None):
        super().__init__()
        self.w = nn.Parameter(nn.init.ones_(__import__("torch").empty(dim)))
    def forward(self, x, grid=None):
        return x * self.w
'''
BAD = '''
from torch import nn
class Halves(nn.Module):
    def __init__(self, dim, num_tokens=None, grid=None):
        super().__init__()
        self.p = nn.Linear(dim, dim // 2)
    def forward(self, x, grid=None):
        return self.p(x)
'''


def test_each_budget_kind_becomes_a_step_count():
    assert parse_budget("2e13flops").kind == "flops" and parse_budget("5min").value == 300
    assert parse_budget("300s").kind == "seconds" and parse_budget("3epochs").value == 3
    assert budget_steps(parse_budget("70steps"), 32) == 70
    assert budget_steps(parse_budget("3epochs"), 32, train_images=1000) == 3 * 31      # drop_last epochs
    assert budget_steps(parse_budget("1e9flops"), 10, train_flops=3e6) == 33           # ⌊1e9 / (3e6·10)⌋
    assert budget_steps(parse_budget("2s"), 10, step_seconds=0.3) == 6
    for bad in ("12", "3.5epochs", "-1steps", "1e9bananas"):
        with pytest.raises(ValueError):
            parse_budget(bad)
    with pytest.raises(ValueError, match="less than one training step"):
        budget_steps(parse_budget("1flops"), 8, train_flops=1e6)


def test_the_schedule_ends_at_the_step_budget():
    recipe = load_recipe("mixlab").replace(max_steps=50, warmup_epochs=1)
    # 10 steps per epoch, 1 warm-up epoch = 10 steps (< a fifth of 50); cosine reaches min_lr at step 50
    assert warmup_steps(recipe, 5, 10) == 10
    assert lr_at(9, recipe, 1.0, 5, 10) == pytest.approx(1.0)
    assert lr_at(50, recipe, 1.0, 5, 10) == pytest.approx(recipe.min_lr)
    assert lr_at(49, recipe, 1.0, 5, 10) > recipe.min_lr
    # without max_steps the old whole-epoch schedule is unchanged
    plain = load_recipe("mixlab").replace(warmup_epochs=1)
    m = plain.min_lr
    assert lr_at(30, plain, 1.0, 5, 10) == pytest.approx(m + (1 - m) * 0.5 * (1 + math.cos(math.pi * 20 / 40)))


def test_the_validation_split_is_stratified_and_disjoint():
    labels = torch.arange(1000) % 10
    train, val = validation_indices(labels, 100, 10)
    assert len(val) == 100 and len(train) == 900 and not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    assert validation_indices(labels, 100, 10)[1].tolist() == val.tolist()   # the same for every run


def test_match_params_is_within_five_percent():
    skeleton = skeleton_args("demo", width=32, patch=4)
    from mixlab.compare.plan import figures, model_kwargs
    target = figures(model_kwargs("attention", skeleton), 1, 16, 4)[0]
    for mixer in ("pooling", "token_mlp"):
        width, got = match_width(mixer, skeleton, target, "params", 1, 16, 4)
        assert abs(got - target) <= 0.05 * target and width % 2 == 0
        assert figures(model_kwargs(mixer, skeleton, width), 1, 16, 4)[0] == got


def test_seed_statistics_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    a, b = [71.2, 73.5, 72.1], [69.0, 70.4, 68.1, 70.0]
    got = welch(a, b)
    assert got["difference"] == pytest.approx(sum(a) / 3 - sum(b) / 4)
    assert got["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    d = describe(a)
    lo, hi = stats.t.interval(0.95, 2, loc=sum(a) / 3, scale=stats.sem(a))
    assert d["ci95"] == pytest.approx([lo, hi]) and d["sd"] == pytest.approx(stats.tstd(a))
    assert welch([1.0], b)["p"] is None and describe([5.0])["ci95"] is None


def test_a_file_mixer_is_loaded_and_a_broken_one_refused_in_one_line(tmp_path, capsys):
    from mixlab.mixers import mixer_class
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    assert mixer_class(f"{tmp_path / 'good.py'}:Scale").__name__ == "Scale"
    rc = main(["compare", "--mixers", f"attention,{tmp_path / 'bad.py'}:Halves", "--data", "synthetic:64x1x8x8:2",
               "--out", str(tmp_path / "c"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "does not follow the mixer contract" in err[0] and "[2, 16, 8]" in err[0]
    assert not (tmp_path / "c" / "runs").exists()   # refused before anything trained
    rc = main(["compare", "--mixers", f"{tmp_path / 'good.py'}:Nope", "--data", "synthetic:64x1x8x8:2",
               "--out", str(tmp_path / "c"), "--device", "cpu"])
    assert rc == 1 and "has no class 'Nope'" in capsys.readouterr().err


def test_compare_trains_to_the_budget_and_a_rerun_reuses_the_runs(tmp_path):
    pytest.importorskip("scipy")
    cc = CompareConfig(mixers=["pooling", "random"], data="synthetic:64x1x8x8:2", budget="6steps", seeds=2,
                       skeleton="demo", width=16, patch=4, batch_size=16, baseline="pooling", out=str(tmp_path),
                       device="cpu", measure=False, threads=1)
    lines = []
    first = run_compare(cc, log=lines.append, command="test")
    for row in first["rows"]:
        assert row["steps"] == 6 and len(row["seeds"]) == 2
        for seed in row["seeds"]:
            summary = json.loads((tmp_path / "runs" / row["mixer"] / f"seed-{seed['seed']}" / "summary.json").read_text())
            assert summary["completed"] and summary["epochs"] == 2      # 4 steps per epoch: 4 + 2
    assert "vs_baseline" in first["rows"][1] and (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    versus = first["rows"][1]["vs_baseline"]    # the baseline line is the pairwise table's entry
    assert first["pairwise"]["random"]["pooling"] == {k: versus[k] for k in ("difference", "p")}
    assert first["pairwise"]["pooling"]["random"]["difference"] == -versus["difference"]
    md = (tmp_path / "compare.md").read_text()
    assert "Every pair: row − column" in md and "Pareto front, top-1 against parameters" in md
    again = []
    second = run_compare(cc, log=again.append, command="test")
    assert not any("to train" in m for m in again)                       # nothing trained twice
    assert [r["top1_mean"] for r in second["rows"]] == [r["top1_mean"] for r in first["rows"]]
    with pytest.raises(ValueError, match="holds a compare with budget"):
        run_compare(CompareConfig(**{**cc.__dict__, "budget": "8steps"}), log=lambda m: None)


def test_the_random_and_dwconv_mixers_follow_their_equations():
    from torch.nn import functional as F
    from mixlab.mixers import DepthwiseConvMixer, RandomMixer
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8)
    rand = RandomMixer(8, num_tokens=16, grid=(4, 4))
    assert not list(rand.parameters()) and "mixing" in rand.state_dict()      # frozen: a buffer, saved
    assert torch.allclose(rand.mixing.sum(-1), torch.ones(16))
    assert torch.allclose(rand(x), rand.mixing @ x, atol=1e-6)
    conv = DepthwiseConvMixer(8, grid=(4, 4)).eval()
    img = x.transpose(1, 2).reshape(2, 8, 4, 4)
    ref = conv.norm(F.gelu(F.conv2d(img, conv.conv.weight, conv.conv.bias, padding=1, groups=8)))
    assert torch.allclose(conv(x), ref.flatten(2).transpose(1, 2), atol=1e-6)


# A compare small enough to repeat: 1 mixer × 2 seeds, 12 steps of 4 per epoch (3 epoch checkpoints per run).
_SMALL = dict(mixers=["pooling"], data="synthetic:64x1x8x8:2", budget="12steps", seeds=2,
              skeleton="demo", width=16, patch=4, batch_size=16, device="cpu", measure=False, threads=1)


def _seed_rows(result):
    """What must not depend on how the runs were launched: each seed's test top-1 and final losses."""
    out = {}
    for row in result["rows"]:
        for s in row["seeds"]:
            summary = json.loads((__import__("pathlib").Path(s["run"]) / "summary.json").read_text())
            out[(row["mixer"], s["seed"])] = (s["test_top1"], summary.get("test_loss"), summary.get("train_loss"))
    return out


@pytest.fixture(scope="module")
def sequential_compare(tmp_path_factory):
    return _seed_rows(run_compare(CompareConfig(**_SMALL, out=str(tmp_path_factory.mktemp("seq"))),
                                  log=lambda m: None, command="test"))


def test_two_workers_give_the_sequential_rows(tmp_path, sequential_compare):
    parallel = run_compare(CompareConfig(**_SMALL, out=str(tmp_path), workers=2), log=lambda m: None, command="test")
    assert _seed_rows(parallel) == sequential_compare


def test_a_killed_compare_rerun_completes_only_what_is_missing(tmp_path, sequential_compare):
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "c"
    cmd = [sys.executable, "-c", "import sys; from mixlab.cli import main; sys.exit(main(sys.argv[1:]))", "compare",
           "--mixers", ",".join(_SMALL["mixers"]), "--data", _SMALL["data"], "--budget", _SMALL["budget"],
           "--seeds", "2", "--skeleton", "demo", "--width", "16", "--patch", "4", "--batch-size", "16",
           "--device", "cpu", "--no-measure", "--threads-per-run", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "runs" / "pooling" / "seed-0" / "summary.json"

    def first_finished():   # summary.json is rewritten every epoch; "completed" marks the run's end
        try:
            return json.loads(first.read_text()).get("completed", False)
        except (OSError, ValueError):
            return False
    deadline = time.time() + 120
    while not first_finished() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)    # kill -9 the compare while its second run trains (or starts)
    proc.wait()
    assert first_finished(), "the compare was killed before its first run finished"
    assert not (out / "compare.json").exists()
    lines = []
    again = run_compare(CompareConfig(**_SMALL, out=str(out)), log=lines.append, command="test")
    todo = next(m for m in lines if "to train" in m)
    assert todo.startswith("compare: 1 run(s) to train (1 already finished)")    # the finished run is kept
    assert _seed_rows(again) == sequential_compare     # resumed or retrained, the rows are the uninterrupted ones


def test_a_damaged_plan_is_one_line_naming_it(tmp_path, capsys):
    for text in ("{not json", "[1]", '{"asked": 3}'):
        (tmp_path / "plan.json").write_text(text)
        rc = main(["compare", "--mixers", "pooling", "--data", "synthetic:64x1x8x8:2", "--out", str(tmp_path),
                   "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and "plan.json" in err[0] and not (tmp_path / "runs").exists()
