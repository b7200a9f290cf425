"""Recipe files: YAML or JSON with the built-in recipes' keys, unknown keys refused in one line, and every
built-in recipe saying what it was measured to give (or that it was not)."""
import json

import pytest

from mixlab.cli import main as cli_main
from mixlab.cli.train import RECIPE_FILE_EXAMPLE
from mixlab.train import TrainConfig, list_recipes, load_recipe, train
from mixlab.train.recipes import Recipe

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}


def test_a_yaml_recipe_is_the_same_recipe_as_its_json(tmp_path):
    as_json = load_recipe("mixlab").to_dict()
    import yaml
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(as_json))
    assert load_recipe(tmp_path / "copy.yaml").to_dict() == as_json
    # YAML 1.1 reads 1e-3 (no dot) as a string; a number field takes it as the number it spells
    (tmp_path / "short.yml").write_text("lr: 1e-3\nmilestones: [3, 6]\nnormalize: [0.5, 0.5]\nema_decay: null\n")
    short = load_recipe(tmp_path / "short.yml")
    assert (short.name, short.lr, short.milestones, short.normalize, short.ema_decay) == \
        ("short", 0.001, (3, 6), [0.5, 0.5], None)
    assert short.epochs == Recipe().epochs   # a key left out takes the field's default


def test_the_help_example_is_a_valid_recipe_file(tmp_path):
    text = RECIPE_FILE_EXAMPLE.split("refused:\n", 1)[1].split("\n\n  mixlab train", 1)[0]
    (tmp_path / "my_recipe.yaml").write_text(text)
    r = load_recipe(tmp_path / "my_recipe.yaml")
    assert (r.name, r.optimizer, r.lr, r.schedule, r.epochs, r.min_lr) == \
        ("my_recipe", "adamw", 1e-3, "cosine", 50, 1e-5)


def test_a_run_trained_with_a_recipe_file_records_it(tmp_path):
    (tmp_path / "fast.yaml").write_text("optimizer: adam\nlr: 2.0e-3\nbatch_size: 32\nepochs: 1\nflip: false\n")
    s = train(TrainConfig(model="mixer_paper", data="synthetic:128x1x16x16:4", recipe=str(tmp_path / "fast.yaml"),
                          out=str(tmp_path / "run"), model_kwargs=dict(TINY), device="cpu"))
    assert s["completed"] and s["recipe"] == "fast" and s["epochs"] == 1
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["recipe"]
    assert (recorded["name"], recorded["lr"], recorded["optimizer"], recorded["flip"]) == ("fast", 2e-3, "adam", False)


@pytest.mark.parametrize("text, needle", [
    ("lr: 0.001\nwarmup: 5\n", "unknown key(s) warmup (did you mean warmup_epochs?)"),
    ("lr: [1, 2\n", "is not valid YAML"),
    ("- lr\n- 0.1\n", "must be a JSON object"),
    ("optimizer: lamb\n", "optimizer must be one of adam, adamw, sgd"),
])
def test_a_bad_recipe_file_is_one_line(tmp_path, capsys, text, needle):
    (tmp_path / "bad.yaml").write_text(text)
    code = cli_main(["train", "--model", "mixer_paper", "--data", "synthetic", "--recipe", str(tmp_path / "bad.yaml"),
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_every_built_in_recipe_states_what_it_was_measured_to_give():
    for name in list_recipes():
        expected = load_recipe(name).expected
        assert expected.startswith(("Measured", "Not measured")), (name, expected)
