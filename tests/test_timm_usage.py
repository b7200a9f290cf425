"""timm's train.py-style use of mixlab models: create_model by name, the optimizer factory with weight-decay
filtering, reset_classifier, pooled features, forward_features/forward_head, and a few training steps."""
import pytest
import torch

import mixlab  # noqa: F401  (registers mixlab's models with timm)

timm = pytest.importorskip("timm")
from timm.optim import create_optimizer_v2  # noqa: E402

# (name, kwargs): a small model per kind of backbone, built through timm.
CASES = [
    ("vit_paper", dict(in_chans=1, img_size=28, depth=1)),
    ("ninformer_paper", dict(in_chans=3, img_size=32, depth=1)),
    ("aff_tiny", dict(in_chans=3, img_size=32, depth=1)),
    ("affnet_et", dict(in_chans=3, img_size=32, depths=(1, 1, 1))),
    ("dia_resnet164", dict(in_chans=3, img_size=32, depth=11)),
]
IDS = [c[0] for c in CASES]


def _create(name, kwargs, num_classes=7):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def _input(model, batch=4):
    return torch.randn(batch, model.in_chans, model.img_size, model.img_size, generator=torch.Generator().manual_seed(1))


def test_names_are_listed_by_timm():
    listed = set(timm.list_models("*_paper"))
    assert {"vit_paper", "mixer_paper", "ninformer_paper", "activator_paper", "localvit_paper"} <= listed
    assert set(mixlab.list_models()) <= set(timm.list_models())


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_create_model_matches_mixlab(name, kwargs):
    model = _create(name, kwargs)
    torch.manual_seed(0)
    direct = mixlab.create_model(name, num_classes=7, **kwargs)
    assert type(model) is type(direct) and model.num_classes == 7
    ref, got = direct.state_dict(), model.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert model.pretrained_cfg["architecture"] == name


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_features_head_and_reset_classifier(name, kwargs):
    model = _create(name, kwargs).eval()
    x = _input(model)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        assert pooled.shape == (4, model.num_features) and logits.shape == (4, 7)
        assert torch.allclose(logits, model(x), atol=1e-6)
        assert torch.allclose(model.get_classifier()(pooled), logits, atol=1e-6)

        model.reset_classifier(3)
        assert model(x).shape == (4, 3) and model.num_classes == 3
        model.reset_classifier(0)
        assert torch.allclose(model(x), pooled, atol=1e-6)      # the body is untouched by head swaps

        headless = _create(name, kwargs, num_classes=0).eval()
        headless.load_state_dict(model.state_dict())                # same body, no classifier parameters
        assert torch.allclose(headless(x), pooled, atol=1e-6)


def test_optimizer_factory_filters_weight_decay():
    model = _create("vit_paper", dict(in_chans=3, img_size=32, depth=2))
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(decay_of) == len(named)
    assert "pos_embed" in model.no_weight_decay() and named["pos_embed"].ndim == 3
    assert decay_of[id(named["pos_embed"])] == 0.0                # no_weight_decay() is respected
    for name, p in named.items():
        if p.ndim <= 1:                                             # biases and norm scales: no decay
            assert decay_of[id(p)] == 0.0, name
        elif name != "pos_embed":
            assert decay_of[id(p)] == 0.05, name


TRAIN_CASES = [c for c in CASES if c[0] != "affnet_et"]   # AFFNet's steps are covered by the training tests


@pytest.mark.parametrize("name,kwargs", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_a_few_steps_reduce_the_loss(name, kwargs):
    # No dropout, and the loss is read in train mode: BatchNorm's running statistics lag after a few steps.
    model = _create(name, {**kwargs, "drop_rate": 0.0}).train()
    optimizer = create_optimizer_v2(model, "adamw", lr=2e-3, weight_decay=0.01)
    x, y = _input(model, batch=8), torch.arange(8) % 7
    loss_fn = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        before = loss_fn(model(x), y).item()
    for _ in range(6):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_fn(model(x), y).item()
    assert after < 0.8 * before


def test_timm_data_config_follows_the_built_and_loaded_model(tmp_path):
    from timm.data import resolve_model_data_config
    model = mixlab.create_model("ninformer_paper", num_classes=10, in_chans=1, img_size=28)
    assert resolve_model_data_config(model)["input_size"] == (1, 28, 28)
    mixlab.save(model, tmp_path, weights_name="best.safetensors", mean=[0.286], std=[0.353],
                class_names=[str(i) for i in range(10)], dataset="fashion-mnist")
    loaded = mixlab.load(tmp_path)
    cfg = resolve_model_data_config(loaded)
    assert cfg["input_size"] == (1, 28, 28) and cfg["mean"] == (0.286,) and cfg["std"] == (0.353,)
