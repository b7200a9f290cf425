"""timm's model contract on every registered mixlab name, written for mixlab (timm's own tests/test_models.py is
run over these names separately; see docs/timm.md): pretrained cfg, forward/backward and head variants,
forward_features, forward_intermediates and features_only, prune_intermediate_layers, and torch.fx tracing.

The cheap checks (cfg, shapes on the meta device) use every model at its native configuration; the ones that
compute use every model at a small input and, for the deep or wide ones, fewer blocks (same code paths)."""
import copy
import math

import pytest
import timm
import torch
from timm.models._features import FeatureGetterNet
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import mixlab
from mixlab.models import IsotropicNet
from mixlab.models.affnet import AFFNet
from mixlab.models.hierarchical import HierarchicalNet

# timm's contract is the classifier's (forward(x) -> logits, features, pooling); the diffusion UNets take
# (x, t) and have their own tests (test_unet.py)
ALL = [n for n in mixlab.list_models() if mixlab.model_cfg(n).get("task", "classification") == "classification"]
KIND = {n: type(mixlab.create_model(n, device="meta")) for n in ALL}
TOKENS = [n for n in ALL if issubclass(KIND[n], IsotropicNet)]


def small(name):
    """(timm.create_model kwargs, input size): a model that computes fast, with the same blocks and stages."""
    c, s, _ = mixlab.model_cfg(name)["input_size"]
    kind = KIND[name]
    if issubclass(kind, IsotropicNet):
        depth = len(mixlab.create_model(name, device="meta").blocks)
        return ({"depth": 3} if depth != 3 else {}), (c, s, s)   # three taps: enough for every check
    if issubclass(kind, AFFNet):
        return {"depths": (1, 1, 1), "img_size": min(s, 64)}, (c, min(s, 64), min(s, 64))
    if issubclass(kind, HierarchicalNet):
        return {"depths": (1, 1, 1)}, (c, s, s)
    return {"depth": SHALLOWEST[name]}, (c, s, s)


def _shallowest(name):
    """The smallest depth a CIFAR ResNet builds with (one block a stage, whatever the block's depth rule)."""
    for depth in range(2, 60):
        try:
            mixlab.create_model(name, depth=depth, device="meta")
            return depth
        except ValueError:
            continue
    raise AssertionError(f"{name} builds at no depth below 60")


SHALLOWEST = {n: _shallowest(n) for n in ALL if not issubclass(KIND[n], (IsotropicNet, AFFNet, HierarchicalNet))}


def build(name, **kwargs):
    torch.manual_seed(0)
    extra, size = small(name)
    return timm.create_model(name, **{**extra, **kwargs}), size


def images(size, batch=2):
    return torch.randn(batch, *size, generator=torch.Generator().manual_seed(1))


# --- pretrained cfg: every name at its native configuration, on the meta device -----------------------------
@pytest.mark.parametrize("name", ALL)
def test_pretrained_cfg_describes_the_model(name):
    cfg = timm.get_pretrained_cfg(name).to_dict()
    assert name in timm.list_models(name, name_matches_cfg=True)
    assert cfg["input_size"] == mixlab.model_cfg(name)["input_size"] and cfg["num_classes"] == mixlab.model_cfg(name)["num_classes"]
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    model = timm.create_model(name, device="meta")
    for key in ("architecture", "input_size", "mean", "std", "pool_size", "first_conv", "classifier", "num_classes",
                "fixed_input_size"):   # the static cfg (registration) agrees with the model as built
        assert model.pretrained_cfg[key] == cfg[key], key
    state = model.state_dict()
    assert state[cfg["first_conv"] + ".weight"].shape[1] == cfg["input_size"][0]
    assert state[cfg["classifier"] + ".weight"].shape[0] == cfg["num_classes"]
    data = timm.data.resolve_data_config(model=model)
    assert data["input_size"] == cfg["input_size"] and data["mean"] == cfg["mean"] and data["std"] == cfg["std"]
    # pool_size is the size of forward_features' map (the patch grid for token models); it does not depend on
    # the depth, so a shallow copy answers on the meta device
    extra, _ = small(name)
    shallow = timm.create_model(name, device="meta", **{k: v for k, v in extra.items() if k != "img_size"})
    features = shallow.forward_features(torch.empty(1, *cfg["input_size"], device="meta"))
    assert shallow.pretrained_cfg["pool_size"] == cfg["pool_size"]
    if name in TOKENS:
        assert features.shape[1:] == (math.prod(cfg["pool_size"]), model.num_features)
    else:
        assert features.shape[1:] == (model.num_features, *cfg["pool_size"])


def test_normalisation_follows_each_family_recipe():
    mean = lambda n: timm.get_pretrained_cfg(n).mean
    assert mean("ninformer_paper") == mean("activator_paper") == mean("vit_paper") == (0.5, 0.5, 0.5)
    assert mean("resnet164") == (0.4914, 0.4822, 0.4465) and timm.get_pretrained_cfg("resnet164").std[2] == 0.2010
    assert mean("affnet_t") == (0.0, 0.0, 0.0) and timm.get_pretrained_cfg("affnet_t").std == (1.0, 1.0, 1.0)
    assert timm.get_pretrained_cfg("vit_tiny").std == timm.get_pretrained_cfg("affnet_t_cifar").std == (0.2470, 0.2435, 0.2616)


def test_cfg_follows_the_built_model():
    model = timm.create_model("ninformer_paper", in_chans=1, img_size=28)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 28, 28) and cfg["pool_size"] == (7, 7) and cfg["mean"] == (0.5,)
    assert timm.data.resolve_data_config(model=model)["input_size"] == (1, 28, 28)
    affnet = timm.create_model("affnet_et", img_size=64, device="meta")
    assert affnet.pretrained_cfg["pool_size"] == (2, 2) and affnet.pretrained_cfg["crop_pct"] == 1.0
    assert timm.create_model("vit_paper", pretrained_cfg_overlay=dict(mean=(0.1,) * 3)).pretrained_cfg["mean"] == (0.1,) * 3


def test_unknown_or_mistyped_arguments_are_one_line_errors():
    for kwargs, match in (({"bogus": 1}, "vit_paper takes no argument 'bogus'; its arguments are: .*depth"),
                          ({"depth": "abc"}, "vit_paper: depth must be an integer, got 'abc'")):
        for create in (mixlab.create_model, timm.create_model):
            with pytest.raises(ValueError, match=match) as err:
                create("vit_paper", **kwargs)
            assert "\n" not in str(err.value) and isinstance(err.value, TypeError)   # TypeError: timm's contract
    with pytest.raises(ValueError, match="pretrained weights"):
        timm.create_model("vit_paper", pretrained=True)


# --- forward, backward, heads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_backward_and_head_variants(name):
    model, size = build(name, num_classes=5)
    x = images(size)
    out = model.train()(x)
    assert out.shape == (2, 5)
    out.logsumexp(1).sum().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.num_features) == (2, model.head_hidden_size)
        torch.testing.assert_close(model(x), model.forward_head(features))
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pooled)
        model.reset_classifier(0, "")                   # global_pool='': the unpooled map (tokens for isotropic)
        torch.testing.assert_close(model(x), features)
    extra, _ = small(name)
    unpooled = timm.create_model(name, num_classes=0, global_pool="", device="meta", **extra)
    assert unpooled(x.to("meta")).shape == features.shape
    if name not in TOKENS:
        assert features.shape == (2, model.num_features, *unpooled.pretrained_cfg["pool_size"])


def test_reset_classifier_keeps_device_dtype_and_mode():
    model = timm.create_model("vit_paper", device="meta").eval().to(torch.float64)
    model.reset_classifier(3)
    assert model.head.weight.device.type == "meta" and model.head.weight.dtype == torch.float64
    assert not model.head.training


# --- forward_intermediates, features_only, pruning ----------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_intermediates_and_features_only(name):
    model, size = build(name)
    model.eval()
    x = images(size)
    info = model.feature_info
    assert len(info) >= 3 and all(i["reduction"] >= j["reduction"] for i, j in zip(info[1:], info))
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert len(maps) == len(info)
        for m, i in zip(maps, info):
            assert m.shape == (2, i["num_chs"], math.ceil(size[1] / i["reduction"]), math.ceil(size[2] / i["reduction"]))
        tokens = model.forward_intermediates(x, indices=[0, -1], output_fmt="NLC", intermediates_only=True)
        torch.testing.assert_close(tokens[1], maps[-1].flatten(2).transpose(1, 2), rtol=0, atol=0)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], maps[1], rtol=0, atol=0)

        # features_only: timm's FeatureGetterNet over forward_intermediates, pruned after the last tap
        pick = (0, len(info) - 2)
        wrapped = FeatureGetterNet(copy.deepcopy(model), out_indices=pick).eval()
        for got, want in zip(wrapped(x), [maps[i] for i in pick]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert len(wrapped.model.feature_info) == len(info)
    backbone = timm.create_model(name, features_only=True, out_indices=pick, device="meta", **small(name)[0])
    feats = backbone.eval()(x.to("meta"))
    assert [f.shape[1] for f in feats] == backbone.feature_info.channels() == [info[i]["num_chs"] for i in pick]
    assert backbone.feature_info.reduction() == [info[i]["reduction"] for i in pick]
    assert "classifier" not in backbone.pretrained_cfg and backbone.pretrained_cfg["input_size"][1:] == size[1:]


@pytest.mark.parametrize("name", ["vit_paper", "ninformer_paper", "dia_vit_paper", "affnet_et", "dia_resnet164",
                                  "wrn52_4"])
def test_prune_intermediate_layers(name):
    model, size = build(name)
    model.eval()
    x = images(size)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
    for i in range(len(taps) - 1):
        pruned = copy.deepcopy(model)
        kept = pruned.prune_intermediate_layers([i], prune_norm=True)
        with torch.no_grad():
            torch.testing.assert_close(pruned.forward_intermediates(x, indices=kept, intermediates_only=True)[0],
                                       taps[i], rtol=0, atol=0)
            features = pruned.forward_features(x)
            if name not in TOKENS:                        # a CNN's features now end at the tap
                torch.testing.assert_close(features, taps[i], rtol=0, atol=0)
        pruned.train()
        sum(f.sum() for f in pruned.forward_intermediates(x, indices=kept, intermediates_only=True)).backward()
        assert not [n for n, p in pruned.named_parameters() if p.grad is None], "pruned model has unused params"


# --- torch.fx -------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing the model in eval mode")
@pytest.mark.parametrize("name", ALL)
def test_fx_trace_forward_backward(name):
    model, size = build(name)
    x = images(size)
    with torch.no_grad():
        expected = model.eval()(x)
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x), expected, rtol=1e-5, atol=1e-5)
    model.train()
    traced = torch.fx.symbolic_trace(model)                # training-mode graph (dropout, batch statistics)
    traced(x).logsumexp(1).sum().backward()
    assert not [n for n, p in traced.named_parameters() if p.grad is None]
    # torchvision's feature extraction (no timm tracer settings) reads an inner stage
    node = model.feature_info[1]["module"]             # a module name: its last node in the graph
    assert any(n.startswith(node + ".") for n in get_graph_node_names(model.eval())[1])
    extractor = create_feature_extractor(model, return_nodes={node: "f"})
    with torch.no_grad():
        got = extractor(x)["f"]
        want = model.forward_intermediates(x, indices=[1], output_fmt="NLC" if name in TOKENS else "NCHW",
                                           intermediates_only=True)[0]
    if name in TOKENS:
        got = got[:, model.num_prefix_tokens:]
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_fx_keeps_the_eager_size_errors():
    model = mixlab.create_model("ninformer_paper")
    traced = torch.fx.symbolic_trace(model)
    for m in (model, traced):
        with pytest.raises(ValueError, match=r"expects 32×32 images") as err:
            m(torch.randn(1, 3, 64, 64))
        assert "\n" not in str(err.value)


def test_timm_feature_extractor_on_a_paper_model():
    from timm.models import create_feature_extractor as timm_extractor
    model = mixlab.create_model("activator_paper").eval()
    extractor = timm_extractor(model, return_nodes={"blocks.1": "mid", "blocks.3": "last"})
    x = images((3, 32, 32))
    with torch.no_grad():
        out = extractor(x)
        maps = model.forward_intermediates(x, indices=[1, 3], output_fmt="NLC", intermediates_only=True)
    torch.testing.assert_close(out["mid"], maps[0])
    torch.testing.assert_close(out["last"], maps[1])


@pytest.mark.parametrize("index", [0, 1])
def test_docs_examples_run(index):
    """docs/timm.md's two examples, run as written."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "timm.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    scope = {}
    torch.manual_seed(0)
    exec(compile(blocks[index], f"docs/timm.md example {index}", "exec"), scope)
    if index == 0:
        assert [tuple(m.shape) for m in scope["maps"]] == [(2, 48, 64, 64), (2, 96, 32, 32), (2, 160, 16, 16)]
        assert [p.shape[1:] for p in scope["pyramid"].values()] == [(64, 64, 64), (64, 32, 32), (64, 16, 16)]
        assert scope["masks"].shape == (2, 21, 256, 256)
    else:
        out = scope["out"]
        assert out["mid"].shape == out["last"].shape == (2, 64, 256) and out["logits"].shape == (2, 10)


def test_a_model_registered_later_gets_its_cfg_from_the_model():
    """No list of names: a CIFAR ResNet registered after import (its class named by the factory's return
    annotation) is a timm model with first_conv, classifier, pool_size and the DIANet normalisation read off the
    class without building it, and a features_only backbone."""
    from timm.models._registry import _clear_model_entries, _model_entrypoints
    from mixlab import registry, timm_models
    from mixlab.models.dia import CifarResNet

    @registry.register_model("test_resnet11", family="resnet", input_size=(3, 32, 32), num_classes=100)
    def build(num_classes=100, in_chans=3, img_size=32, **overrides) -> CifarResNet:
        return CifarResNet(depth=11, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **overrides)

    try:
        cfg = timm.get_pretrained_cfg("test_resnet11")
        assert (cfg.first_conv, cfg.classifier, cfg.pool_size, cfg.num_classes) == ("stem", "head", (8, 8), 100)
        assert cfg.mean == (0.4914, 0.4822, 0.4465) and cfg.std == (0.2023, 0.1994, 0.2010)
        backbone = timm.create_model("test_resnet11", features_only=True)
        assert backbone.feature_info.reduction() == [1, 2, 4] and len(backbone(images((3, 32, 32)))) == 3
    finally:
        _clear_model_entries("test_resnet11")           # leave both registries as they were
        for table in (_model_entrypoints, registry._MODELS, timm_models.default_cfgs,
                      vars(timm_models)):
            table.pop("test_resnet11", None)
        timm_models.__all__.remove("test_resnet11")


def test_plain_cifar_resnets_script():
    """TorchScript is deprecated and not required; the CIFAR ResNets without DIA script (docs/timm.md)."""
    model = mixlab.create_model("resnet164", depth=11).eval()
    x = images((3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
