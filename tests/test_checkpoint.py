"""Checkpoints: safetensors + config.json round trips, pickle refusal, clear errors for bad checkpoints."""
import json

import pytest
import torch

import mixlab

# Small variants of several families (overrides keep each model to a fraction of a second).
FAMILIES = [
    ("vit_paper", dict(depth=1)),
    ("ninformer_paper", dict(depth=1, in_chans=1, img_size=28)),
    ("aff_paper_size", dict(depth=1)),
    ("affnet_et", dict(img_size=32)),
    ("dia_resnet164", dict(depth=11, num_classes=10)),
]
META = dict(mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2], class_names=[f"c{i}" for i in range(10)], dataset="unit")


def _save(tmp_path, name="vit_paper", weights_name="best.safetensors", **overrides):
    torch.manual_seed(0)
    model = mixlab.create_model(name, **{"depth": 1, **overrides}).eval()
    mixlab.save(model, tmp_path, weights_name=weights_name, **META)
    return model


@pytest.mark.parametrize("name,overrides", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_round_trip_rebuilds_the_same_model(tmp_path, name, overrides):
    torch.manual_seed(0)
    model = mixlab.create_model(name, **overrides).eval()
    mixlab.save(model, tmp_path, weights_name="best.safetensors", **META)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == name and config["num_classes"] == model.num_classes
    assert config["input_size"] == [model.in_chans, model.img_size, model.img_size]

    loaded = mixlab.load(tmp_path)
    assert not loaded.training and type(loaded) is type(model)
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    x = torch.randn(2, model.in_chans, model.img_size, model.img_size)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.data_config["class_names"] == META["class_names"]
    assert loaded.data_config["mean"] == META["mean"] and loaded.data_config["dataset"] == "unit"


def test_weights_file_and_preference(tmp_path):
    first = _save(tmp_path, weights_name="last.safetensors")
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    mixlab.save(first, tmp_path, weights_name="best.safetensors", **META)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        best = mixlab.load(tmp_path)(x)                               # best is preferred over last
        direct = mixlab.load(tmp_path / "best.safetensors")(x)        # a weights file with config.json beside
        last = mixlab.load(tmp_path, weights="last.safetensors")(x)
        assert torch.equal(best, first(x)) and torch.equal(direct, best)
    assert not torch.equal(last, best)


def _evil_checkpoint(tmp_path, payload):
    _save(tmp_path)                              # a valid config.json beside, so only the pickle can stop loading
    torch.save({"model": payload}, tmp_path / "evil.pt")
    return tmp_path / "evil.pt"


def test_pickle_is_refused_without_flag(tmp_path, shell_payload):
    payload, marker = shell_payload
    evil = _evil_checkpoint(tmp_path, payload)
    with pytest.raises(ValueError, match="refusing to load evil.pt"):
        mixlab.load(evil)
    with pytest.raises(ValueError, match="refusing"):
        mixlab.load(tmp_path, weights="evil.pt")
    assert not marker.exists()


def test_pickle_flag_still_uses_weights_only(tmp_path, shell_payload):
    payload, marker = shell_payload
    evil = _evil_checkpoint(tmp_path, payload)
    with pytest.raises(ValueError, match="weights-only"):
        mixlab.load(evil, allow_pickle=True)
    assert not marker.exists()


def test_pickle_flag_loads_a_plain_state_dict(tmp_path):
    model = _save(tmp_path)
    torch.save({"model": model.state_dict()}, tmp_path / "trusted.pth")
    loaded = mixlab.load(tmp_path / "trusted.pth", allow_pickle=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_mismatched_weights_name_the_model(tmp_path):
    _save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_kwargs"]["embed_dim"] = 128
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match model vit_paper"):
        mixlab.load(tmp_path)


def test_missing_config_json(tmp_path):
    _save(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        mixlab.load(tmp_path)


def test_missing_weights_and_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        mixlab.load(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="best.safetensors"):
        mixlab.load(tmp_path)


def test_bad_config_json(tmp_path):
    _save(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        mixlab.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_kwargs": {}}))
    with pytest.raises(ValueError, match="'model' must be a model name"):
        mixlab.load(tmp_path)
