"""AFFNet (arXiv 2307.14008): published sizes, forward/backward at native and tiny inputs, the timm model API,
and the block structure (FFN before the filter inside one skip)."""
import math

import pytest
import torch

import mixlab
from mixlab.models.affnet import AFFTransformerBlock




def n_params(model):
    return sum(p.numel() for p in model.parameters())


# Exact counts at 1000 classes / 256 px; the README's 1.4M / 2.6M / 5.5M are these truncated to 0.1M
# (the models' docstring explains why no local-representation conv precedes the AFF blocks).
COUNTS = {"affnet_et": (1_436_264, 1.4), "affnet_t": (2_654_232, 2.6), "affnet": (5_568_696, 5.5)}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_published_parameter_counts(name):
    exact, published = COUNTS[name]
    model = mixlab.create_model(name)
    assert n_params(model) == exact
    assert math.floor(n_params(model) / 1e5) / 10 == published == mixlab.model_cfg(name)["published"]["params_m"]
    cfg = mixlab.model_cfg(name)
    assert cfg["input_size"] == (3, 256, 256) and cfg["num_classes"] == 1000 and cfg["family"] == "affnet"


def test_no_local_representation_conv():
    """A MobileViT local conv (3×3 + BN + 1×1, C→C) per AFF stage would overshoot every published size."""
    for name, (exact, published) in COUNTS.items():
        widths = mixlab.models.affnet.AFFNET_CONFIGS[name]["channels"][2:]
        with_local = exact + sum(9 * c * c + 2 * c + c * c for c in widths)
        assert with_local / 1e6 > published + 0.25


def test_forward_backward_at_256():
    torch.manual_seed(0)
    model = mixlab.create_model("affnet_et", num_classes=10)
    x = torch.randn(2, 3, 256, 256)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert model.forward_features(x).shape == (2, model.num_features, 8, 8)


@pytest.mark.parametrize("name", sorted(COUNTS))
@pytest.mark.parametrize("in_chans,size", [(3, 32), (1, 28)])
def test_tiny_inputs_collapse_to_one_pixel(name, in_chans, size):
    model = mixlab.create_model(name, num_classes=10, in_chans=in_chans, img_size=size)
    x = torch.randn(2, in_chans, size, size)
    assert model.forward_features(x).shape[-2:] == (1, 1)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert model.stem[0].weight.grad is not None


def test_timm_api():
    torch.manual_seed(0)
    model = mixlab.create_model("affnet_et", num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    features = model(x)
    assert features.shape == (2, model.num_features) == (2, 576)
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), features)
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    logits = model(x)
    torch.testing.assert_close(logits, model.head(features))
    model.reset_classifier(3, global_pool="max")
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True),
                               model.forward_features(x).amax(dim=(2, 3)))
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, global_pool="token")
    no_wd = model.no_weight_decay()
    assert len(no_wd) == 2 * 9 and all(n.endswith(("filter.b1", "filter.b2")) for n in no_wd)
    assert no_wd <= dict(model.named_parameters()).keys()


def test_widths_and_head_follow_the_official_config():
    model = mixlab.create_model("affnet")
    assert model.num_features == 960                                    # min(4 · 320, 960)
    assert [len(s[1].blocks) for s in (model.layer3, model.layer4, model.layer5)] == [2, 4, 3]
    block = model.layer4[1].blocks[0]
    assert block.filter.num_groups == 8 and block.filter.inner_skip
    assert block.mlp.block[0][0].out_channels == 2 * 256                # MV2 expansion ffn_dim / dim = 2
    assert isinstance(block.norm1, torch.nn.GroupNorm) and block.norm1.num_groups == 1


def test_block_runs_the_ffn_before_the_filter_inside_one_skip():
    torch.manual_seed(0)
    block = AFFTransformerBlock(16, 32).eval()
    x = torch.randn(2, 16, 5, 6)
    expected = x + block.filter(block.norm2(block.mlp(block.norm1(x))))
    torch.testing.assert_close(block(x), expected)
    # the MV2 keeps its own identity skip and the AFF its inner skip
    z = block.norm1(x)
    torch.testing.assert_close(block.mlp(z), z + block.mlp.block(z))
    w = torch.randn(2, 16, 5, 6)
    torch.testing.assert_close(block.filter(w), w + block.filter.filter(w))


def test_dft_impl_matches_torch_fft_in_the_whole_model():
    torch.manual_seed(0)
    a = mixlab.create_model("affnet_et", num_classes=5).eval()
    b = mixlab.create_model("affnet_et", num_classes=5, fft_impl="dft").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 48)
    torch.testing.assert_close(b(x), a(x), rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="activation"):
        mixlab.create_model("affnet_et", act="tanhh")
    with pytest.raises(ValueError, match="5 stage widths"):
        mixlab.create_model("affnet_et", channels=(32, 48, 64))
    with pytest.raises(ValueError, match="output_stride"):
        mixlab.create_model("affnet_et", output_stride=4)


def test_cifar_stem_variants_keep_the_weights_and_filter_larger_maps():
    import mixlab
    for name in ("affnet_et", "affnet_t", "affnet"):
        paper = mixlab.create_model(name, num_classes=10, img_size=32)
        cifar = mixlab.create_model(f"{name}_cifar")
        assert cifar.num_classes == 10
        assert sum(p.numel() for p in cifar.parameters()) == sum(p.numel() for p in paper.parameters())
        cifar.load_state_dict(paper.state_dict())          # same architecture, only strides differ
    model = mixlab.create_model("affnet_et_cifar").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.layer5(model.layer4(model.layer3(model.layer2(model.layer1(model.stem(x)))))).shape[-2:] == (4, 4)
        assert model(x).shape == (1, 10)


@pytest.mark.parametrize("output_stride, sizes", [(32, [32, 16, 8, 4, 2]), (16, [32, 16, 8, 4, 4]),
                                                  (8, [32, 16, 8, 8, 8])])
def test_output_stride_keeps_the_weights_and_caps_the_maps(output_stride, sizes):
    plain = mixlab.create_model("affnet_et", num_classes=0, img_size=64)
    atrous = mixlab.create_model("affnet_et", num_classes=0, img_size=64, output_stride=output_stride)
    atrous.load_state_dict(plain.state_dict())          # no weight changes shape
    assert [f["reduction"] for f in atrous.feature_info] == [64 // s for s in sizes]
    with torch.no_grad():
        maps = atrous.eval().forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)
    assert [m.shape[-1] for m in maps] == sizes


def test_dilation_replaces_the_stride_exactly_on_the_convolutions():
    """DeepLab's identity, float64, eval-mode BN: the strided block's output is the dilated block's output at
    the even positions, and a 3×3 depth-wise conv dilated by 2 on the dense map is the undilated conv on the
    sub-sampled one. Checked on layer5's downsampling MV2 block followed by its first AFF block's MV2 (the AFF
    filter and the LN₂ᴅ see all positions, so they are not expected to commute with sub-sampling)."""
    torch.manual_seed(0)
    plain = mixlab.create_model("affnet_et", num_classes=0, img_size=64).double()
    atrous = mixlab.create_model("affnet_et", num_classes=0, img_size=64, output_stride=16).double()
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):     # non-trivial statistics, so BN is not an identity
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    atrous.load_state_dict(plain.state_dict())
    plain.eval(), atrous.eval()
    x = torch.randn(2, plain.feature_info[3]["num_chs"], 4, 4, dtype=torch.float64)
    down_p, down_a = plain.layer5[0], atrous.layer5[0]
    mlp_p, mlp_a = plain.layer5[1].blocks[0].mlp, atrous.layer5[1].blocks[0].mlp
    assert down_a.block[1][0].stride == (1, 1) and mlp_a.block[1][0].dilation == (2, 2)
    with torch.no_grad():
        y_p, y_a = down_p(x), down_a(x)
        assert y_a.shape[-1] == 2 * y_p.shape[-1]
        torch.testing.assert_close(y_a[..., ::2, ::2], y_p, rtol=0, atol=1e-12)
        torch.testing.assert_close(mlp_a(y_a)[..., ::2, ::2], mlp_p(y_p), rtol=0, atol=1e-12)


def test_attn_norm_layer_norm_is_a_per_position_channel_layernorm():
    """The official command-line default: (x − mean_c x) / √(var_c x + 1e-5)·γ + β at every (h, w), stated
    independently here; the code default LN₂ᴅ normalises over C×H×W at once."""
    torch.manual_seed(0)
    model = mixlab.create_model("affnet_et_cifar", attn_norm="layer_norm").double()
    block = model.layer3[1].blocks[0]
    assert n_params(model) == n_params(mixlab.create_model("affnet_et_cifar"))   # γ, β of C either way
    with torch.no_grad():
        block.norm1.weight.normal_(), block.norm1.bias.normal_()
    x = torch.randn(2, block.norm1.weight.numel(), 5, 7, dtype=torch.float64)
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * block.norm1.weight[:, None, None] + block.norm1.bias[:, None, None]
    torch.testing.assert_close(block.norm1(x), expected, rtol=0, atol=1e-12)
    ln2d = mixlab.create_model("affnet_et_cifar").layer3[1].blocks[0].norm1.double()
    assert not torch.allclose(ln2d(x), expected)            # the two options differ
    assert all(type(m.norm) is type(block.norm1) for m in [model.layer4[1], model.layer5[1]])
    model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).sum().backward()


def test_init_official_keeps_pytorch_defaults_and_decays_the_mask_biases():
    torch.manual_seed(0)
    ours, official = mixlab.create_model("affnet_t"), mixlab.create_model("affnet_t", init="official")
    # mixlab: zero linear bias, trunc-normal(0.02) weights; PyTorch's default: U(±1/√fan_in) for both.
    assert torch.count_nonzero(ours.head.bias) == 0 and torch.count_nonzero(official.head.bias) > 0
    bound = 1 / math.sqrt(official.head.in_features)
    assert official.head.weight.abs().max() <= bound < ours.head.weight.abs().max()   # normal(0.02) tails pass it
    conv = official.stem[0].weight            # kaiming_uniform(a=√5): |w| ≤ 1/√fan_in
    assert conv.abs().max() <= 1 / math.sqrt(conv[0].numel())
    assert ours.stem[0].weight.abs().max() > 1 / math.sqrt(conv[0].numel())   # Kaiming fan-out normal is wider
    assert ours.no_weight_decay() and official.no_weight_decay() == set()
    assert all(n.endswith(("filter.b1", "filter.b2")) for n in ours.no_weight_decay())


@pytest.mark.parametrize("kwargs, needle", [({"attn_norm": "batch_norm"}, "attn_norm"),
                                            ({"init": "xavier"}, "init")])
def test_bad_norm_or_init_is_refused(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        mixlab.create_model("affnet_et", **kwargs)


def test_models_prints_gmacs_beside_gflops_and_affnet_matches_the_published_macs(capsys):
    """The AFF README's 0.4 / 0.8 / 1.5 "G FLOPs" are multiply-adds: mixlab's GMACs column (FLOPs / 2) meets
    them, its GFLOPs column is twice as large."""
    from mixlab.cli import main
    assert main(["models", "affnet_t", "--flops", "--num-classes", "1000"]) == 0
    head, row = capsys.readouterr().out.splitlines()[:2]
    assert "GFLOPs" in head and "GMACs" in head
    gflops, gmacs = (float(v) for v in row.split()[4:6])
    assert gmacs == pytest.approx(gflops / 2, abs=1e-4)
    published = mixlab.model_cfg("affnet_t")["published"]["gmacs"]
    assert round(gmacs, 1) == published == 0.8 and gflops > 1.5
