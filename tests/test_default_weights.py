"""Which weights a run's users get when they name none (`mixlab.rundir.default_weights`): the test set never
chooses anything, so best.safetensors (the best epoch on the evaluation split) is the default only when that
split was a validation split (`--validation N`); every other training run defaults to last.safetensors."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import mixlab
from mixlab.cli import main as cli_main
from mixlab.rundir import default_weights, validation_run, weights_label
from mixlab.train import evaluate_run

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}
DATA = "synthetic:384x1x16x16:4"


def _cli_train(run, *extra):
    return cli_main(["train", "--model", "mixer_paper", "--data", DATA, "--epochs", "2", "--batch-size", "64",
                     "--device", "cpu", "--out", str(run), "--model-kwargs", json.dumps(TINY), *extra])


def _distinct_best(run):
    """best.safetensors made unlike last.safetensors (a short run's best epoch is often its last), so which
    file a loader read shows in its outputs."""
    weights = load_file(run / "last.safetensors")
    save_file({k: v + 0.25 if v.is_floating_point() else v for k, v in weights.items()}, run / "best.safetensors")


def _same_outputs(a, b):
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a run evaluated on the test split, a run trained with --validation 64), both through `mixlab train`,
    with the CLI's final table."""
    root = tmp_path_factory.mktemp("weights")
    plain, val = root / "plain", root / "val"
    capture = {}
    import contextlib
    import io
    for run, extra in ((plain, ()), (val, ("--validation", "64"))):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert _cli_train(run, *extra) == 0
        capture[run.name] = out.getvalue()
        _distinct_best(run)
    return plain, val, capture


def test_the_rule_follows_the_recorded_evaluation_split(runs):
    plain, val, _ = runs
    assert json.loads((plain / "config.json").read_text())["train"]["validation"] is None
    assert json.loads((val / "config.json").read_text())["train"]["validation"] == 64
    assert json.loads((val / "summary.json").read_text())["validation"] == 64
    assert (validation_run(plain), validation_run(val)) == (False, True)
    assert default_weights(plain) == "last.safetensors" and default_weights(val) == "best.safetensors"


def test_load_and_eval_default_to_last_without_validation(runs, capsys):
    plain, _, _ = runs
    assert _same_outputs(mixlab.load(plain), mixlab.load(plain, weights="last.safetensors"))
    assert not _same_outputs(mixlab.load(plain), mixlab.load(plain, weights="best.safetensors"))
    r = evaluate_run(plain, device="cpu")
    assert r["weights"] == "last.safetensors"
    assert r["top1"] == evaluate_run(plain, weights="last", device="cpu")["top1"]
    assert cli_main(["eval", "--run", str(plain), "--device", "cpu"]) == 0
    assert "mixer_paper last.safetensors on synthetic test" in capsys.readouterr().out
    # best stays available by name, and then the output says the test split chose it
    assert cli_main(["eval", "--run", str(plain), "--weights", "best", "--device", "cpu"]) == 0
    assert "best.safetensors (its epoch chosen on the test split) on" in capsys.readouterr().out


def test_load_and_eval_default_to_best_with_validation(runs, capsys):
    _, val, _ = runs
    assert _same_outputs(mixlab.load(val), mixlab.load(val, weights="best.safetensors"))
    assert not _same_outputs(mixlab.load(val), mixlab.load(val, weights="last.safetensors"))
    assert evaluate_run(val, device="cpu")["weights"] == "best.safetensors"
    assert cli_main(["eval", "--run", str(val), "--device", "cpu"]) == 0
    line = capsys.readouterr().out
    assert "mixer_paper best.safetensors on synthetic test" in line and "chosen on the test split" not in line
    assert weights_label(val, "best.safetensors") == "best.safetensors"


def test_the_final_table_says_what_best_is(runs):
    _, _, out = runs
    plain, val = out["plain"].splitlines(), out["val"].splitlines()
    assert "test top-1 best test" in plain[-2] and "which chose that epoch: no result" in plain[-3]
    assert "val top-1  best val" in val[-2] and "validation split" in val[-3]


def test_a_missing_default_never_falls_back_to_the_test_chosen_best(runs, tmp_path):
    plain, _, _ = runs
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "best.safetensors"):
        (copy / name).write_bytes((plain / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="holds no last.safetensors .*chosen on the test split"):
        mixlab.load(copy)
    assert _same_outputs(mixlab.load(copy, weights="best.safetensors"), mixlab.load(plain, weights="best.safetensors"))


def test_a_saved_folder_is_no_training_run(tmp_path):
    model = mixlab.create_model("mixer_paper", num_classes=4, in_chans=1, img_size=16, **TINY)
    mixlab.save(model, tmp_path, weights_name="model.safetensors", mean=[0.5], std=[0.25])
    assert validation_run(tmp_path) is None and default_weights(tmp_path) == "model.safetensors"
    assert _same_outputs(mixlab.load(tmp_path), model.eval())
