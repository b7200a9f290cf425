"""`mixlab reproduce`: the table logic on fake summaries (aggregation, published lookup, diff, markdown, JSON
rows), the plan on disk (resume / skip / missing data), and one tiny real run through the training engine."""
import json
import math
from pathlib import Path

import pytest

from mixlab.reproduce import (TABLES, build_row, check_claims, load_published, lookup_published, mean_std,
                              plan, render_markdown, reproduce, resolve_datasets, scaled_milestones)
from mixlab.reproduce.report import ROW_KEYS
from mixlab.reproduce.runner import model_recipe
from mixlab.train.recipes import Recipe
from conftest import dataset_folder, needs_dataset

FASHION = dataset_folder("fashion-mnist")       # None: the real-data tests below skip
needs_fashion = needs_dataset("fashion-mnist")
PUBLISHED = load_published()
FAKE_RECIPES = {"paper": {"name": "paper", "epochs": 100, "schedule": "constant", "milestones": []},
                "mixlab": {"name": "mixlab", "epochs": 100, "schedule": "cosine", "milestones": []},
                "dianet": {"name": "dianet", "epochs": 180, "schedule": "multistep", "milestones": [60, 120]}}


def fake_load_recipe(name):
    if name not in FAKE_RECIPES:
        raise ValueError(f"unknown recipe {name!r}")
    return Recipe.from_dict(FAKE_RECIPES[name])


def write_run(path, model, summary=None, overrides=None, cfg=None):
    """A run directory as the engine leaves it: config.json, recording the request `cfg` when given
    (+ summary.json when given)."""
    path.mkdir(parents=True, exist_ok=True)
    train = cfg.to_dict() if cfg is not None else {"model": model, "overrides": overrides or {}}
    recipe = {"name": cfg.recipe, "epochs": cfg.epochs} if cfg is not None else {}
    (path / "config.json").write_text(json.dumps({"model": model, "model_kwargs": train.get("model_kwargs", {}),
                                                  "train": train, "recipe": recipe}))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))


def summary(model, dataset, top1, seed=0, epochs=100, best=None, recipe="paper", lossy=False, subset=None):
    return {"model": model, "dataset": dataset, "lossy": lossy, "recipe": recipe, "epochs": epochs, "seed": seed,
            "batch_size": 128, "subset": subset, "test_top1": top1, "best_test_top1": best or top1,
            "params": 2_650_890, "train_seconds": 10.0 * (seed + 1), "device": "cpu", "completed": True}


# ---- aggregation -------------------------------------------------------------------------------------------

def test_mean_and_sample_std():
    mean, std = mean_std([70.0, 72.0, 74.0])
    assert mean == pytest.approx(72.0) and std == pytest.approx(2.0)   # ddof=1: sqrt((4+0+4)/2)
    assert mean_std([71.5]) == (71.5, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_row_against_published_on_the_lossy_cifar10():
    runs = [summary("activator_paper", "cifar10-jpeg", v, seed=i, best=v + 1, lossy=True)
            for i, v in enumerate([70.0, 72.0, 74.0])]
    row = build_row("activator", "activator_paper", "cifar10-jpeg", "paper", runs, PUBLISHED, recipe_epochs=100)
    assert set(ROW_KEYS) <= set(row)
    assert row["top1_mean"] == pytest.approx(72.0) and row["top1_std"] == pytest.approx(2.0)
    assert row["published"] == 73.2 and row["diff"] == pytest.approx(-1.2)
    assert row["investigate"] is False                      # 1.2 points is within the 1.5 tolerance
    assert row["paper_dataset"] == "cifar10" and row["lossy"] is True
    assert row["best_top1_mean"] == pytest.approx(73.0)      # kept, but the final epoch is what is reported
    assert row["top1_per_seed"] == [70.0, 72.0, 74.0] and row["seeds"] == 3
    assert row["train_seconds"] == pytest.approx(20.0) and row["train_seconds_total"] == pytest.approx(60.0)
    assert row["budget"] is False and "2405.15953" in row["published_source"]


def test_gap_beyond_tolerance_is_flagged_and_budget_runs_are_marked():
    runs = [summary("vit_paper", "cifar10-jpeg", 60.0, epochs=10, lossy=True)]
    row = build_row("activator", "vit_paper", "cifar10-jpeg", "paper", runs, PUBLISHED, recipe_epochs=100)
    assert row["diff"] == pytest.approx(-5.7) and row["investigate"] is True
    assert row["budget"] is True and row["top1_std"] is None
    md = render_markdown("activator", [row])
    assert "⚠" in md and "‡" in md and "10 of 100" in md and "†" in md and "lossy" in md


def test_seeds_that_disagree_on_the_setting_are_refused():
    runs = [summary("vit_paper", "mnist", 98.0, epochs=100), summary("vit_paper", "mnist", 98.0, seed=1, epochs=50)]
    with pytest.raises(ValueError, match="epochs"):
        build_row("ninformer", "vit_paper", "mnist", "paper", runs, PUBLISHED)


# ---- published numbers -------------------------------------------------------------------------------------

def test_published_targets_are_exactly_the_retrieved_numbers():
    targets = {(e["table"], e["model"], e["dataset"]): e["top1"] for e in PUBLISHED["entries"] if e["comparable"]}
    assert targets == {
        ("activator", "activator_paper", "cifar10"): 73.2, ("activator", "activator_paper", "cifar100"): 46.1,
        ("activator", "activator_glu_paper", "cifar10"): 73.2, ("activator", "activator_glu_paper", "cifar100"): 46.1,
        ("activator", "vit_paper", "cifar10"): 65.7, ("activator", "vit_paper", "cifar100"): 34.9,
        ("activator", "mixer_paper", "cifar10"): 70.1, ("activator", "mixer_paper", "cifar100"): 39.2,
        ("dia", "resnet164", "cifar100"): 73.43, ("dia", "dia_resnet164", "cifar100"): 76.67,
        ("dia", "wrn52_4", "cifar100"): 79.75, ("dia", "dia_wrn52_4", "cifar100"): 80.99,
        ("dia", "preresnet164", "cifar100"): 76.53, ("dia", "dia_preresnet164", "cifar100"): 78.20,
        ("dia", "resnext101_8x32d", "cifar100"): 81.18, ("dia", "dia_resnext101_8x32d", "cifar100"): 82.46}
    for e in PUBLISHED["entries"]:
        assert e["source"] and 0 < e["top1"] <= 100 and e["table"] in TABLES
        assert e["model"] in TABLES[e["table"]].models


def test_unknown_numbers_are_na_never_invented():
    for model in TABLES["ninformer"].models:             # NiNformer's tables were not retrieved
        for dataset in ("mnist", "cifar10", "cifar10-jpeg", "cifar100", "fashion-mnist"):
            assert lookup_published(PUBLISHED, "ninformer", model, dataset) == (None, [])
    assert lookup_published(PUBLISHED, "activator", "vit_paper", "mnist")[0] is None
    row = build_row("ninformer", "ninformer_paper", "mnist", "paper", [summary("ninformer_paper", "mnist", 98.9)],
                    PUBLISHED)
    assert row["published"] is None and row["diff"] is None and row["investigate"] is False
    line = [l for l in render_markdown("ninformer", [row]).splitlines() if l.startswith("| ninformer_paper")][0]
    assert "| n/a | n/a |" in line


def test_imagenet_numbers_are_context_never_the_cifar_target():
    target, context = lookup_published(PUBLISHED, "affnet", "affnet_t", "cifar10-jpeg")
    assert target is None and [(c["dataset"], c["top1"]) for c in context] == [("imagenet-1k", 77.0)]
    row = build_row("affnet", "affnet_t", "cifar10-jpeg", "mixlab",
                    [summary("affnet_t", "cifar10-jpeg", 80.0, recipe="mixlab", lossy=True)], PUBLISHED)
    assert row["published"] is None and row["context"][0]["top1"] == 77.0
    line = [l for l in render_markdown("affnet", [row]).splitlines() if l.startswith("| affnet_t")][0]
    assert "| n/a | n/a |" in line and "ImageNet-1k 77.00" in line
    # DIA: the official README target on CIFAR-100; the third-party CIFAR-10 figure is context only
    assert lookup_published(PUBLISHED, "dia", "dia_resnet164", "cifar100")[0]["top1"] == 76.67
    target, context = lookup_published(PUBLISHED, "dia", "resnet164", "cifar10-jpeg")
    assert target is None and [c["top1"] for c in context] == [96.32]
    # the journal version's figures sit beside the README target, never in its place; SE has no target
    target, context = lookup_published(PUBLISHED, "dia", "dia_resnext101_8x32d", "cifar100")
    assert target["top1"] == 82.46 and [c["top1"] for c in context] == [82.60]
    target, context = lookup_published(PUBLISHED, "dia", "se_resnet164", "cifar100")
    assert target is None and [c["top1"] for c in context] == [80.05]


# ---- claims and markdown -----------------------------------------------------------------------------------

def test_claims_and_markdown_footnotes():
    rows = [build_row("ninformer", m, "fashion-mnist", "paper", [summary(m, "fashion-mnist", v, seed=s)
                                                                   for s, v in enumerate(vals)], PUBLISHED)
            for m, vals in (("vit_paper", [88.0, 89.0]), ("mixer_paper", [91.0, 91.2]),
                            ("ninformer_paper", [90.0, 91.0]))]
    claims = {(c["better"], c["worse"]): c for c in check_claims("ninformer", rows)}
    assert set(claims) == {("ninformer_paper", "vit_paper"), ("ninformer_paper", "mixer_paper")}  # no localvit row
    assert claims[("ninformer_paper", "vit_paper")]["holds"] and \
        claims[("ninformer_paper", "vit_paper")]["margin"] == pytest.approx(2.0)
    against_mixer = claims[("ninformer_paper", "mixer_paper")]
    assert not against_mixer["holds"] and against_mixer["within_noise"]   # -0.6 inside a 0.71 seed spread
    md = render_markdown("ninformer", rows, skipped=[{"dataset": "cifar100", "reason": "cifar100: not found"}],
                         failed=[{"model": "localvit_paper", "dataset": "fashion-mnist", "seed": 0, "error": "nan"}],
                         claims=check_claims("ninformer", rows))
    assert "90.50 ± 0.71" in md and "skipped cifar100: cifar100: not found" in md
    assert "FAILED localvit_paper" in md and "ninformer_paper > mixer_paper on Fashion-MNIST: does not hold" in md
    assert "†" not in md                                 # no lossy row, no lossy footnote


# ---- plan on disk ------------------------------------------------------------------------------------------

def test_missing_datasets_are_skipped_and_cifar10_falls_back_to_the_lossy_copy():
    present = {"mnist", "cifar10-jpeg"}

    def probe(name):
        if name not in present:
            raise FileNotFoundError(f"{name} not found; see the data README")

    found, skipped = resolve_datasets(["mnist", "cifar10", "cifar100"], probe)
    assert found == [("mnist", "mnist"), ("cifar10", "cifar10-jpeg")]
    assert skipped == [{"dataset": "cifar100", "reason": "cifar100 not found; see the data README"}]
    with pytest.raises(ValueError, match="unknown dataset"):
        resolve_datasets(["imagenet"], probe)


def test_budget_scales_step_milestones():
    assert scaled_milestones([60, 120], 18, 180) == [6, 12]
    assert scaled_milestones([60, 120], 180, 180) == [60, 120]
    assert scaled_milestones([80, 120, 160], 2, 200) == [1]       # collapsed steps are dropped, never >= epochs
    assert scaled_milestones([], 5, 100) == []


def test_plan_marks_done_partial_and_new_runs_and_wrn_settings(tmp_path):
    write_run(tmp_path / "cifar10-jpeg" / "resnet164" / "seed0", "resnet164",
              {"model": "resnet164", "completed": True})
    partial = tmp_path / "cifar10-jpeg" / "resnet164" / "seed1"
    write_run(partial, "resnet164")
    (partial / "trainer_state.pt").write_bytes(b"x")
    foreign = tmp_path / "cifar10-jpeg" / "wrn52_4" / "seed1"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not a run")
    runs = plan("dia", tmp_path, [("cifar10", "cifar10-jpeg")], ("resnet164", "wrn52_4"), 2, "dianet", None,
                fake_load_recipe)
    assert [(r.model, r.seed, r.status) for r in runs] == [("resnet164", 0, "done"), ("resnet164", 1, "partial"),
                                                          ("wrn52_4", 0, "new"), ("wrn52_4", 1, "foreign")]
    assert runs[0].epochs == 180 and runs[0].overrides == {"milestones": [60, 120]}
    assert runs[2].epochs == 200 and runs[2].overrides == {"milestones": [80, 120, 160], "gamma": 0.2,
                                                           "weight_decay": 5e-4}
    assert model_recipe("dia", "wrn52_4", "dianet", 20, fake_load_recipe)[:2] == (
        20, {"milestones": [8, 12, 16], "gamma": 0.2, "weight_decay": 5e-4})
    # the table's own settings do not leak into another recipe
    assert model_recipe("dia", "wrn52_4", "mixlab", None, fake_load_recipe) == (100, {}, 100)
    with pytest.raises(ValueError, match="not in this table"):
        reproduce("dia", models="resnet18", dry_run=True, probe=lambda n: None)


def _fake_trainer(calls):
    def train_fn(cfg):
        calls.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        top1 = 50.0 + 10 * ("ninformer" in cfg.model) + cfg.seed
        s = summary(cfg.model, cfg.data, top1, seed=cfg.seed, epochs=cfg.epochs, recipe=cfg.recipe,
                    subset=cfg.subset)
        write_run(out, cfg.model, s, cfg.overrides, cfg)
        return s
    return train_fn


def test_reproduce_writes_rows_and_a_rerun_trains_nothing(tmp_path):
    calls = []
    probe_missing = {"cifar100"}

    def probe(name):
        if name in probe_missing:
            raise FileNotFoundError(f"{name}: no offline copy")

    kw = dict(datasets="fashion-mnist,cifar100", models="vit_paper,ninformer_paper", seeds=2, epochs=3,
              out=tmp_path / "t", subset=64, json_path=tmp_path / "docs" / "ninformer.json", log=lambda m: None,
              probe=probe)
    report = reproduce("ninformer", train_fn=_fake_trainer(calls), **kw)
    assert len(calls) == 4 and {c.resume for c in calls} == {None} and {c.epochs for c in calls} == {3}
    data = json.loads((tmp_path / "docs" / "ninformer.json").read_text())
    assert data == json.loads((tmp_path / "t" / "ninformer.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"vit_paper", "ninformer_paper"} and all(set(ROW_KEYS) <= set(r) for r in rows.values())
    assert rows["ninformer_paper"]["top1_mean"] == pytest.approx(60.5)
    assert rows["ninformer_paper"]["top1_std"] == pytest.approx(math.sqrt(0.5), abs=1e-4)
    assert data["skipped"][0]["dataset"] == "cifar100" and data["metric"].startswith("final-epoch")
    assert (tmp_path / "t" / "ninformer.md").read_text() == report["markdown"]
    # rerun: everything is done, nothing trains, same rows
    again = reproduce("ninformer", train_fn=_fake_trainer(calls), **kw)
    assert len(calls) == 4 and again["rows"] == report["rows"]
    # an interrupted run (checkpoint, no completed summary) is resumed, not restarted
    (tmp_path / "t" / "fashion-mnist" / "vit_paper" / "seed1" / "summary.json").unlink()
    (tmp_path / "t" / "fashion-mnist" / "vit_paper" / "seed1" / "trainer_state.pt").write_bytes(b"x")
    reproduce("ninformer", train_fn=_fake_trainer(calls), **kw)
    assert len(calls) == 5 and calls[-1].resume == str(tmp_path / "t" / "fashion-mnist" / "vit_paper" / "seed1")
    # the same directory with another subset is refused with one clear line
    with pytest.raises(ValueError, match="subset"):
        reproduce("ninformer", train_fn=_fake_trainer(calls), **{**kw, "subset": 128})


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path):
    import pickle

    def train_fn(cfg):
        if cfg.model == "vit_paper":
            raise RuntimeError("loss became nan at epoch 1 step 3")
        if cfg.model == "mixer_paper":
            raise pickle.UnpicklingError("unreadable trainer_state.pt\nmore detail")
        return _fake_trainer([])(cfg)

    report = reproduce("ninformer", datasets="mnist", models="vit_paper,mixer_paper,ninformer_paper", epochs=1,
                       out=tmp_path, log=lambda m: None, probe=lambda n: None, train_fn=train_fn)
    assert [r["model"] for r in report["rows"]] == ["ninformer_paper"]
    assert report["failed"] == [
        {"model": "vit_paper", "dataset": "mnist", "seed": 0, "error": "loss became nan at epoch 1 step 3"},
        {"model": "mixer_paper", "dataset": "mnist", "seed": 0, "error": "UnpicklingError: unreadable trainer_state.pt"}]


# ---- the real thing, tiny ----------------------------------------------------------------------------------

@needs_fashion
def test_cli_end_to_end_on_a_fashion_mnist_subset(tmp_path, capsys):
    from mixlab.cli import main
    args = ["reproduce", "activator", "--datasets", "fashion-mnist,cifar100", "--models",
            "mixer_paper,activator_glu_paper", "--epochs", "1", "--subset", "200", "--device", "cpu",
            "--data-dir", str(FASHION), "--out", str(tmp_path)]
    assert main(args + ["--dry-run"]) == 0
    plan_text = capsys.readouterr().out
    assert "2 runs: 2 to train (2 epochs)" in plan_text and "skipped cifar100" in plan_text
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| activator_glu_paper | Fashion-MNIST |" in out and "skipped cifar100" in out
    rows = json.loads((tmp_path / "activator.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"mixer_paper", "activator_glu_paper"}
    for r in rows:
        assert r["epochs"] == 1 and r["subset"] == 200 and r["device"] == "cpu" and 0 <= r["top1_mean"] <= 100
        assert r["params"] > 0 and r["published"] is None          # no published Fashion-MNIST numbers
        assert r["precision"] == "fp32" and r["collapsed"] is False
        assert r["augmentation"] == "random crop (pad 4) + horizontal flip"
    assert "training augmentation: Fashion-MNIST: random crop (pad 4) + horizontal flip" in out
    assert main(args + ["--dry-run"]) == 0
    assert "0 to train (0 epochs), 0 to resume, 2 done" in capsys.readouterr().out


def test_recipe_overrides_reach_every_run_and_name_the_default_directory(tmp_path, monkeypatch):
    from mixlab.cli import parse_overrides
    from mixlab.reproduce import default_out
    overrides = parse_overrides(["test_augment=true", "label_smoothing=0.1"])
    assert overrides == {"test_augment": True, "label_smoothing": 0.1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["test_augment"])
    assert default_out("ninformer", "paper") == Path("runs/reproduce/ninformer")
    assert default_out("ninformer", "mixlab", {"test_augment": True}) == \
        Path("runs/reproduce/ninformer-mixlab-test_augment=true")
    monkeypatch.chdir(tmp_path)
    calls = []
    report = reproduce("dia", datasets="cifar10", models="wrn52_4", epochs=20, overrides={"gamma": 0.5},
                       log=lambda m: None, probe=lambda n: None, train_fn=_fake_trainer(calls))
    assert calls[0].overrides == {"milestones": [8, 12, 16], "gamma": 0.5, "weight_decay": 5e-4}  # user wins
    assert calls[0].data == "cifar10" and report["out"] == str(Path("runs/reproduce/dia-gamma=0.5"))
    assert "`gamma=0.5`" in report["markdown"]
    with pytest.raises(ValueError, match="unknown recipe key.*gama"):
        reproduce("dia", overrides={"gama": 0.5}, dry_run=True, probe=lambda n: None)


def test_accuracy_vs_cost_plot(tmp_path):
    from mixlab.reproduce.plot import cost_of
    report = reproduce("ninformer", datasets="mnist", models="mixer_paper,ninformer_paper", epochs=1, out=tmp_path,
                       log=lambda m: None, probe=lambda n: None, train_fn=_fake_trainer([]), plot=True,
                       cost_fn=lambda model, dataset: ({"mixer_paper": 0.1, "ninformer_paper": 0.2}[model], "GF"))
    png = Path(report["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["cost_unit"] == "GF"
    saved = json.loads((tmp_path / "ninformer.json").read_text())
    assert {r["model"]: r["cost"] for r in saved["rows"]} == {"mixer_paper": 0.1, "ninformer_paper": 0.2}
    gflops, unit = cost_of("mixer_paper", "mnist")        # the real counter: a paper-size model is sub-GFLOP
    assert 0.01 < gflops < 1.0 and unit in ("forward GFLOPs / image", "M params")


def test_digits_are_not_flipped_and_a_collapsed_seed_is_marked(tmp_path):
    runs = plan("ninformer", tmp_path, [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")], ("vit_paper",), 1,
                "paper", None, fake_load_recipe)
    assert [(r.dataset, r.overrides) for r in runs] == [("mnist", {"flip": False}), ("fashion-mnist", {})]
    # the user's --set wins over the table's per-dataset choice
    runs = plan("ninformer", tmp_path, [("mnist", "mnist")], ("vit_paper",), 1, "paper", None, fake_load_recipe,
                extra={"flip": True})
    assert runs[0].overrides == {"flip": True}
    bad = dict(summary("vit_paper", "cifar10-jpeg", 10.0, seed=1), collapsed=True,
               collapse_reason="test top-1 fell to 10.00% (chance is 10.00%) after reaching 45.00% at epoch 30")
    row = build_row("activator", "vit_paper", "cifar10-jpeg", "paper",
                    [summary("vit_paper", "cifar10-jpeg", 60.0), bad], PUBLISHED)
    assert row["collapsed"] and row["collapsed_seeds"] == [1]
    text = render_markdown("activator", [row])
    assert "↯" in text and "collapsed (seed(s) 1): test top-1 fell to 10.00%" in text


# --- the papers' own experiments as tables -------------------------------------------------------------
@needs_fashion
def test_vit_vs_mixer_and_activator_glu_plans_list_their_rows(capsys):
    from mixlab.cli import main
    from mixlab.reproduce.tables import TABLES

    assert main(["reproduce", "vit-vs-mixer", "--dry-run", "--datasets", "fashion-mnist", "--data-dir",
                 str(FASHION)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fashion-mnist")]
    assert len(lines) == 8
    spec = TABLES["vit-vs-mixer"]
    combos = {(spec.arch_of(m)[0], spec.arch_of(m)[1]["class_token"], spec.arch_of(m)[1]["pos_embed"])
              for m in spec.models}
    assert combos == {(a, c, p) for a in ("vit_paper", "mixer_paper") for c in (True, False) for p in ("learn", "none")}
    assert spec.arch_of("attention-mean-pos_learned") == ("vit_paper", {"class_token": False, "global_pool": "avg",
                                                                        "pos_embed": "learn"})
    assert main(["reproduce", "activator-glu", "--dry-run", "--datasets", "fashion-mnist", "--data-dir",
                 str(FASHION)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fashion-mnist")]
    assert len(lines) == 6 and sum("activator_glu_paper" in ln for ln in lines) == 3
    assert {TABLES["activator-glu"].arch_of(m)[1]["mixer_kwargs"]["act"] for m in TABLES["activator-glu"].models} == \
        {"gelu", "silu", "relu"}


@needs_fashion
@pytest.mark.parametrize("table,rows", [("vit-vs-mixer", 8), ("activator-glu", 6)])
def test_the_experiment_tables_run_end_to_end_on_a_cpu_budget(tmp_path, capsys, table, rows):
    from mixlab.cli import main
    args = ["reproduce", table, "--datasets", "fashion-mnist", "--epochs", "1", "--subset", "40", "--batch-size",
            "20", "--device", "cpu", "--data-dir", str(FASHION), "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / f"{table}.json").read_text())
    assert len(data["rows"]) == rows and len({r["model"] for r in data["rows"]}) == rows
    for r in data["rows"]:
        assert r["params"] > 0 and r["gflops"] > 0 and r["published"] is None and r["epochs"] == 1
        config = json.loads((tmp_path / "fashion-mnist" / r["model"] / "seed0" / "config.json").read_text())
        assert config["model"] == r["arch"] and config["train"]["model_kwargs"] == r["model_kwargs"]
    assert data["questions"] and all(set(q) >= {"question", "a", "b", "margin"} for q in data["questions"])
    assert "Questions (ours, a − b):" in out
    if table == "vit-vs-mixer":   # a class token adds its parameters (and N+1 token-MLP rows), nothing else
        p = {r["model"]: r["params"] for r in data["rows"]}
        assert p["attention-cls-pos_none"] - p["attention-mean-pos_none"] == 256
        assert p["attention-mean-pos_learned"] - p["attention-mean-pos_none"] == 49 * 256
    assert main(args + ["--dry-run"]) == 0
    assert f"0 to train (0 epochs), 0 to resume, {rows} done" in capsys.readouterr().out
