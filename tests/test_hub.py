"""mixlab export --hub: a folder timm and mixlab both load with identical logits, a model card with its facts,
and --push failing in one line offline with the folder left complete."""
import json

import pytest
import torch

import mixlab
from mixlab.cli import main as cli_main
from mixlab.train import TrainConfig, train

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    train(TrainConfig(model="mixer_paper", data="synthetic:128x1x16x16:4", epochs=1, batch_size=32,
                      out=str(tmp / "run"), model_kwargs=dict(TINY), device="cpu"))
    assert cli_main(["export", "--run", str(tmp / "run"), "--hub", str(tmp / "out")]) == 0
    return tmp


def test_timm_and_mixlab_rebuild_the_release_with_identical_logits(release):
    import timm
    out = release / "out"
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = mixlab.load(release / "run").eval()(x)
    by_mixlab = mixlab.load(out)
    by_timm = timm.create_model("mixer_paper", pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"))).eval()
    local = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        for m in (by_mixlab, by_timm, local):
            assert torch.equal(m(x), ref)
    data = timm.data.resolve_data_config({}, model=by_timm)
    assert tuple(data["input_size"]) == (1, 16, 16) and tuple(data["mean"]) == (0.5,) and data["crop_pct"] == 1.0
    assert by_mixlab.data_config["class_names"] == ["class0", "class1", "class2", "class3"]


def test_config_is_timms_hub_format_and_the_card_states_its_facts(release):
    out = release / "out"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "mixer_paper" and cfg["num_classes"] == 4
    assert cfg["model_args"]["in_chans"] == 1 and "num_classes" not in cfg["model_args"]
    assert cfg["pretrained_cfg"]["input_size"] == [1, 16, 16] and cfg["pretrained_cfg"]["mean"] == [0.5]
    card = (out / "README.md").read_text()
    summary = json.loads((release / "run" / "summary.json").read_text())
    meta = card.split("---")[1]
    import yaml
    meta = yaml.safe_load(meta)
    assert meta["library_name"] == "timm" and "mixlab" in meta["tags"] and meta["license"] == "mit"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == round(summary["test_top1"], 2)
    params = sum(p.numel() for p in mixlab.load(out).parameters())
    assert f"Params (M): {params / 1e6:.3f}" in card and "GMACs" in card and "Activations (M)" in card
    assert "Image size: 16 x 16" in card and "mixlab train --model mixer_paper" in card
    assert "![training curves](curves.png)" in card and (out / "curves.png").is_file()
    assert f"{summary['test_top1']:.2f} %" in card and summary["device"] in card


def test_push_offline_is_one_line_and_the_folder_stays(release, capsys, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = sorted(p.name for p in (release / "out").iterdir())
    code = cli_main(["export", "--run", str(release / "run"), "--hub", str(release / "out"), "--push", "me/model"])
    err = capsys.readouterr().err
    assert code == 1 and "pushing" in err and "hf upload me/model" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (release / "out").iterdir()) == before


def test_the_card_names_the_split_that_chose_the_shipped_weights(release):
    """Without --validation the card reports the final epoch (the shipped weights) and calls the test-chosen best
    epoch no result; with --validation N its figures are the validation split's and the test set is unused."""
    import yaml

    from mixlab.hub import model_card
    run = release / "run"
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    recipe = config.get("recipe") or {}
    card = model_card(config, summary, recipe, (1000, 0.1, 1000), "2026-12-03", False)
    assert "chosen on the test split and is no result" in card and "validation" not in card.split("---")[1]
    config["train"]["validation"] = 32
    card = model_card(config, summary, recipe, (1000, 0.1, 1000), "2026-12-03", False)
    meta = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]
    assert meta["dataset"]["split"] == "validation" and meta["metrics"][0]["name"].startswith("validation top-1")
    assert "on 32 held-out training images" in card and "the test set was not used" in card
