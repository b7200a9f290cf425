"""DIA (DIANet, arXiv 1905.10671): the shared per-stage LSTM against a hand-written loop, parameter counts,
gradcheck of the cell, and DIA on the isotropic transformer. PreResNet, ResNeXt and the SE baseline have their
own checks in test_dia_backbones.py."""
import pytest
import torch
import torch.nn.functional as F

import mixlab
from mixlab.layers.dia import DIALSTMCell


def lstm_reference(cell, x, h, c):
    """DIA-LSTM step written from the equations: gates = φ_x(x) + φ_h(h), φ = W₂ ReLU(W₁ v + b₁) + b₂;
    c' = σ(f)c + σ(i)tanh(g); h' = σ(o)σ(c')."""
    def phi(seq, v):
        return F.linear(torch.relu(F.linear(v, seq[0].weight, seq[0].bias)), seq[2].weight, seq[2].bias)

    i, f, g, o = (phi(cell.input_map, x) + phi(cell.hidden_map, h)).split(cell.channels, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.sigmoid(c), c


def manual_forward(model, x, carry_state=True):
    """The whole network with DIA applied block by block in the test, one explicit state per stage."""
    x = model.stem(x)
    if not model.preact:
        x = torch.relu(model.stem_bn(x))
    for stage in model.stages:
        cell = stage.dia
        h = c = torch.zeros(x.shape[0], cell.channels, dtype=x.dtype)
        for block in stage.blocks:
            r, s = block.branches(x)
            if not carry_state:
                h = c = torch.zeros_like(h)
            h, c = lstm_reference(cell, r.mean(dim=(2, 3)), h, c)
            x = r * h[:, :, None, None] + s
            x = x if model.preact else torch.relu(x)
    if model.preact:
        x = torch.relu(model.final_bn(x))
    return model.head(x.mean(dim=(2, 3)))


def randomize_bn(model):
    """Non-trivial BN statistics and affine terms, so eval mode does not reduce BN to the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("name,depth", [("dia_resnet164", 20), ("dia_wrn52_4", 16), ("dia_preresnet164", 20),
                                        ("dia_resnext101_8x32d", 20)])
def test_shared_lstm_stage_equals_manual_loop(name, depth):
    torch.manual_seed(0)
    model = randomize_bn(mixlab.create_model(name, depth=depth, num_classes=7)).double().eval()
    assert all(len(stage.blocks) == 2 for stage in model.stages)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    y = model(x)
    torch.testing.assert_close(y, manual_forward(model, x), rtol=1e-10, atol=1e-10)
    # the state really is carried: restarting it at every block gives another answer
    assert not torch.allclose(y, manual_forward(model, x, carry_state=False), atol=1e-6)


def dia_params(model):
    return sum(p.numel() for stage in model.stages for p in stage.dia.parameters())


def test_dia_parameters_do_not_grow_with_depth():
    expected = sum(2 * (c * c // 4 + c // 4 + c * c + 4 * c) for c in (64, 128, 256))   # 2·(1.25C² + 4.25C)
    assert expected == 218_848
    for name, depths in (("dia_resnet164", (20, 56)), ("dia_wrn52_4", (16, 28))):
        counts = [dia_params(mixlab.create_model(name, depth=d)) for d in depths]
        assert counts == [expected, expected], (name, counts)
    # one cell per stage, shared by the blocks: no block owns LSTM parameters
    model = mixlab.create_model("dia_resnet164", depth=56)
    assert sum(1 for m in model.modules() if isinstance(m, DIALSTMCell)) == 3


@pytest.mark.parametrize("name,count", [("resnet164", 1_727_284), ("dia_resnet164", 1_946_132)])
def test_published_parameter_counts(name, count):
    model = mixlab.create_model(name, num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == count
    assert mixlab.model_cfg(name)["num_classes"] == 100


def test_dia_adds_the_same_lstm_to_the_wide_resnet():
    base = sum(p.numel() for p in mixlab.create_model("wrn52_4").parameters())
    dia = sum(p.numel() for p in mixlab.create_model("dia_wrn52_4").parameters())
    # the LSTMs, and the official dia_wrn.py's BN after every branch's second conv (8·2·(64 + 128 + 256))
    assert dia - base == 218_848 + 7_168
    wrn = mixlab.create_model("wrn52_4")
    assert [len(s.blocks) for s in wrn.stages] == [8, 8, 8] and wrn.num_features == 256
    assert wrn.stages[0].blocks[0].drop.p == 0.3


@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_cell_gradcheck_float64(with_state):
    torch.manual_seed(0)
    cell = DIALSTMCell(8, reduction=4).double()
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(3, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    params = dict(cell.named_parameters())

    def fn(x, h, c, *weights):
        out, (h2, c2) = torch.func.functional_call(cell, dict(zip(params, weights)),
                                                   (x, (h, c) if with_state else None))
        return out, c2

    assert torch.autograd.gradcheck(fn, (x, *state, *params.values()), fast_mode=True)
    out, (_, c) = cell(x, state)
    ref_h, ref_c = lstm_reference(cell, x, *state)
    torch.testing.assert_close(out, ref_h)
    torch.testing.assert_close(c, ref_c)
    assert ((out > 0) & (out < 1)).all()


def test_dia_on_the_isotropic_backbone_equals_a_manual_block_loop():
    torch.manual_seed(0)
    model = mixlab.create_model("dia_vit_paper", num_classes=5).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    tokens, grid = model.patch_embed(x)
    tokens = tokens + model.pos_embed
    h = c = torch.zeros(2, model.embed_dim, dtype=torch.float64)
    for block in model.blocks:
        delta = block.residual(tokens, grid)
        h, c = lstm_reference(model.dia, delta.mean(dim=1), h, c)
        tokens = tokens + delta * h[:, None, :]
    expected = model.head(model.norm(tokens).mean(dim=1))
    torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["resnet164", "dia_wrn52_4"])
def test_timm_api(name):
    torch.manual_seed(0)
    model = mixlab.create_model(name, depth=20 if "resnet" in name else 16, num_classes=0).eval()
    x = torch.randn(2, 3, 16, 16)
    features = model(x)
    assert features.shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), features)
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4 and model(x).shape == (2, 4)
    assert model.forward_features(x).shape == (2, model.num_features, 4, 4)
    y = model(x)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_depth_names_the_rule():
    with pytest.raises(ValueError, match="9n\\+2"):
        mixlab.create_model("dia_resnet164", depth=50)
    with pytest.raises(ValueError, match="6n\\+4"):
        mixlab.create_model("wrn52_4", depth=50)
