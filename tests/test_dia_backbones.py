"""The DIANet table backbones beyond ResNet-164 / WRN-52-4: PreResNet-164, ResNeXt-101 8×32d and the per-block
SE baseline. Exact parameter counts against the official code and osmr/imgclsmob (every difference explained
module by module), the blocks against explicit formulas in float64, and one training step each."""
import pytest
import torch
import torch.nn.functional as F

import mixlab
from mixlab.layers.dia import DIALSTMCell
from mixlab.models.dia import CifarResNet
from test_dia import randomize_bn   # non-trivial BN statistics, so eval-mode BN is not the identity

NEW = ("preresnet164", "dia_preresnet164", "se_resnet164", "se_preresnet164", "resnext101_8x32d",
       "dia_resnext101_8x32d")
SMALL = 20      # 9n+2 with n = 2 blocks a stage: the DIA state is carried at least once


def count(model):
    return sum(p.numel() for p in model.parameters())


def build_meta(name, **overrides):
    with torch.device("meta"):          # full depth for counting only: shapes, no memory, no init cost
        return mixlab.create_model(name, num_classes=100, **overrides)


# Sources (CIFAR-100 head):
#   osmr: osmr/imgclsmob gluon/gluoncv2/models/*_cifar.py `_test` weight counts and gluon/README.md.
#   official: counted by instantiating gbup-group/DIANet models/cifar/dia_preresnet.py and dia_resnext.py
#   (commit 51685ca), PreResNet(164, 100, 'Bottleneck') and CifarResNeXt(8, 101, 100, 4).
#   bearpaw: bearpaw/pytorch-classification models/cifar/preresnet.py, PreResNet(164, 100, 'Bottleneck').
@pytest.mark.parametrize("name,expected", [
    ("resnet164", 1_727_284),              # osmr resnet164bn_cifar100
    ("dia_resnet164", 1_946_132),          # osmr diaresnet164bn_cifar100 and the official dia_resnet.py
    ("se_resnet164", 1_929_388),           # osmr seresnet164bn_cifar100
    ("preresnet164", 1_726_388),           # osmr preresnet164bn_cifar100 and bearpaw preresnet.py
    ("dia_preresnet164", 1_961_364),       # official dia_preresnet.py
    ("dia_resnext101_8x32d", 33_006_020),  # official dia_resnext.py
])
def test_parameter_counts_match_the_published_code(name, expected):
    assert count(build_meta(name)) == expected
    assert mixlab.model_cfg(name)["published"]["params"] == expected


def lstm_params(model):
    return sum(count(stage.dia) for stage in model.stages)


def test_differences_from_osmr_and_the_baselines_are_exactly_the_modules_named():
    # DIA-PreResNet-164: osmr's 1,945,236 has no BN at the end of the residual branch; the official code does
    # (`bn_additional`, 2·4·planes per block: 18 blocks × (64 + 128 + 256) × 2 = 16,128).
    dia_pre = build_meta("dia_preresnet164")
    branch_bns = sum(count(b.branch_bn) for s in dia_pre.stages for b in s.blocks)
    assert branch_bns == 16_128 and count(dia_pre) - branch_bns == 1_945_236
    assert count(build_meta("dia_preresnet164", branch_bn=False)) == 1_945_236
    # ... and apart from those BNs it is PreResNet-164 plus one DIA-LSTM per stage (2·(1.25C² + 4.25C) each)
    lstm = sum(2 * (c * c // 4 + c // 4 + c * c + 4 * c) for c in (64, 128, 256))
    assert lstm_params(dia_pre) == lstm == 218_848
    assert count(dia_pre) - branch_bns - lstm == count(build_meta("preresnet164")) == 1_726_388
    # SE-ResNet-164 = ResNet-164 + 18 SE modules a stage at r = 16: 2C²/16 + C/16 + C each
    se = sum(18 * (2 * c * c // 16 + c // 16 + c) for c in (64, 128, 256))
    assert se == 202_104 and count(build_meta("se_resnet164")) - count(build_meta("resnet164")) == se
    # SE-PreResNet-164: osmr's 1,928,012 differs by its network, not its SE: osmr's CIFARSEPreResNet has a
    # conv+BN+ReLU stem (+2·16) and no final BN-ReLU (−2·256), unlike its own PreResNet-CIFAR and bearpaw's.
    se_pre = build_meta("se_preresnet164")
    assert count(se_pre) - count(build_meta("preresnet164")) == se
    assert count(se_pre) + 2 * 16 - count(se_pre.final_bn) == 1_928_012
    # ResNeXt-101 8×32d: the official DIA network without its three LSTMs (C = 128, 256, 512)
    dia_x = build_meta("dia_resnext101_8x32d")
    assert lstm_params(dia_x) == sum(2 * (c * c // 4 + c // 4 + c * c + 4 * c) for c in (128, 256, 512)) == 867_776
    assert count(build_meta("resnext101_8x32d")) == 33_006_020 - 867_776 == 32_138_244


def test_resnext_8x32d_layout():
    model = build_meta("resnext101_8x32d")
    assert [len(s.blocks) for s in model.stages] == [11, 11, 11] and model.num_features == 512
    first = model.stages[0].blocks[0]
    assert first.conv2.groups == 8 and first.conv2.in_channels == 8 * 32 and first.conv3.out_channels == 128
    assert model.stem.out_channels == 32 and [s.blocks[0].conv2.in_channels for s in model.stages] == [256, 512, 1024]


def bn(x, m):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=m.eps)


def explicit_branches(block, x):
    """(R, S) of a block from the equations, with functional convolutions and eval-mode BN, SE excluded."""
    if hasattr(block, "branch_bn"):        # pre-activation bottleneck (bearpaw / DIANet preresnet)
        r = F.conv2d(F.relu(bn(x, block.bn1)), block.conv1.weight)
        r = F.conv2d(F.relu(bn(r, block.bn2)), block.conv2.weight, stride=block.conv2.stride, padding=1)
        r = F.conv2d(F.relu(bn(r, block.bn3)), block.conv3.weight)
        if isinstance(block.branch_bn, torch.nn.BatchNorm2d):
            r = bn(r, block.branch_bn)
        s = x if isinstance(block.shortcut, torch.nn.Identity) else \
            F.conv2d(x, block.shortcut.weight, stride=block.shortcut.stride)   # on the raw input
        return r, s
    groups = block.conv2.groups            # (ResNeXt) bottleneck
    r = F.relu(bn(F.conv2d(x, block.conv1.weight), block.bn1))
    r = F.relu(bn(F.conv2d(r, block.conv2.weight, stride=block.conv2.stride, padding=1, groups=groups), block.bn2))
    r = bn(F.conv2d(r, block.conv3.weight), block.bn3)
    s = x if isinstance(block.shortcut, torch.nn.Identity) else \
        bn(F.conv2d(x, block.shortcut[0].weight, stride=block.shortcut[0].stride), block.shortcut[1])
    return r, s


def explicit_se(se, r):
    """s = σ(W₂ ReLU(W₁ GAP(r) + b₁) + b₂), r ⊙ s."""
    pooled = r.mean(dim=(2, 3))
    hidden = F.relu(F.linear(pooled, se.fc1.weight.flatten(1), se.fc1.bias))
    return r * torch.sigmoid(F.linear(hidden, se.fc2.weight.flatten(1), se.fc2.bias))[:, :, None, None]


def explicit_forward(model, x):
    """The whole network from the equations, block by block (SE applied explicitly where the model has it)."""
    x = model.stem(x) if model.preact else F.relu(bn(model.stem(x), model.stem_bn))
    for stage in model.stages:
        for block in stage.blocks:
            r, s = explicit_branches(block, x)
            if block.se is not None:
                assert block.se.fc1.out_channels == block.se.fc2.in_channels == r.shape[1] // 16
                r = explicit_se(block.se, r)
            x = r + s if model.preact else F.relu(r + s)
    if model.preact:
        x = F.relu(bn(x, model.final_bn))
    return model.head(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("name,overrides", [
    ("preresnet164", {}), ("se_resnet164", {}), ("se_preresnet164", {}), ("resnext101_8x32d", {}),
    ("dia_preresnet164", {"dia": False}),     # the official extra BN at the end of every branch, LSTM aside
])
def test_network_equals_the_explicit_formulation(name, overrides):
    torch.manual_seed(0)
    model = randomize_bn(mixlab.create_model(name, depth=SMALL, num_classes=5, **overrides)).double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(model(x), explicit_forward(model, x), rtol=1e-10, atol=1e-10)


def test_resnext_init_is_the_official_one():
    # dia_resnext.py zeroes every bias (the LSTM's included) and draws the classifier kaiming-normal
    torch.manual_seed(0)
    model = mixlab.create_model("dia_resnext101_8x32d", depth=SMALL)
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    # 22 BN biases (zero anyway), 4 per LSTM × 3 stages, the classifier's
    assert len(biases) == 22 + 12 + 1 and all(torch.count_nonzero(p) == 0 for p in biases)
    assert abs(model.head.weight.std().item() - (2 / 512) ** 0.5) < 0.01
    plain = mixlab.create_model("dia_resnet164", depth=SMALL)
    assert torch.count_nonzero(plain.stages[0].dia.input_map[0].bias) > 0     # bearpaw-style nets keep defaults


@pytest.mark.parametrize("name", NEW)
def test_trains_a_step(name):
    torch.manual_seed(0)
    model = mixlab.create_model(name, depth=SMALL, num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert torch.isfinite(F.cross_entropy(model(x), y))
    # the timm API on the same model
    model.eval()
    feats = model.forward_features(x)
    assert feats.shape == (4, model.num_features, 4, 4)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    model.reset_classifier(0)
    assert model(x).shape == (4, model.num_features)


def test_attention_modules_are_where_the_config_says():
    se = mixlab.create_model("se_preresnet164", depth=SMALL)
    assert all(b.se is not None and b.se.fc1.out_channels == b.se.fc1.in_channels // 16
               for s in se.stages for b in s.blocks)
    assert all(s.dia is None for s in se.stages)
    dia = mixlab.create_model("dia_preresnet164", depth=SMALL)
    assert all(b.se is None for s in dia.stages for b in s.blocks)
    assert sum(isinstance(m, DIALSTMCell) for m in dia.modules()) == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(dia=True, se=True), "exclusive"),
    (dict(block="preact_bottleneck", cardinality=8), "cardinality"),
    (dict(block="bottleneck", branch_bn=True), "branch_bn"),
    (dict(block="bottleneck", drop_rate=0.3), "drop_rate"),
    (dict(block="preact_bottleneck", depth=50), "9n\\+2"),
    (dict(weight_init="xavier"), "weight_init"),
    (dict(se=True, se_reduction=128), "reduction"),
])
def test_bad_options_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CifarResNet(**{"depth": 20, **kwargs})


def test_reproduce_table_trains_every_backbone_with_its_official_recipe():
    from mixlab.reproduce.runner import model_recipe
    from mixlab.reproduce.tables import TABLES
    from mixlab.train.recipes import load_recipe

    assert set(NEW) <= set(TABLES["dia"].models)
    expected = {   # gbup-group/DIANet run_code.py (cifar.py defaults where the command sets nothing)
        "resnet164": (180, {"milestones": [60, 120]}),
        "se_resnet164": (180, {"milestones": [60, 120]}),
        "preresnet164": (164, {"milestones": [81, 122]}),
        "se_preresnet164": (164, {"milestones": [81, 122]}),
        "dia_preresnet164": (164, {"milestones": [81, 122]}),
        "resnext101_8x32d": (300, {"milestones": [150, 225], "weight_decay": 5e-4}),
        "dia_resnext101_8x32d": (300, {"milestones": [150, 225], "weight_decay": 5e-4}),
    }
    for model, (epochs, overrides) in expected.items():
        assert model_recipe("dia", model, "dianet", None, load_recipe)[:2] == (epochs, overrides), model
    recipe = load_recipe("dianet")
    assert (recipe.lr, recipe.momentum, recipe.batch_size, recipe.gamma) == (0.1, 0.9, 128, 0.1)
