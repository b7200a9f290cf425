"""Every registered model honours the timm model API; the isotropic mixers are checked against
independent formulations (timm's ViT with copied weights, gradcheck in float64) and the official
parameter counts."""
import pytest
import timm
import torch
from torch import nn

import mixlab
from mixlab.mixers import create_mixer
from mixlab.layers import ConvFeedForward
from mixlab.models import IsotropicNet

# The diffusion UNets are denoisers f(x_t, t) without a classifier; tests/test_unet.py covers them.
ALL = [n for n in mixlab.list_models() if mixlab.model_cfg(n)["family"] != "unet"]
# The deep CIFAR CNNs are checked at reduced depth here (same blocks, same stage logic); their full-depth
# counts and forward passes are covered in test_dia.py.
SHALLOW = {"resnet164": {"depth": 20}, "dia_resnet164": {"depth": 20}, "wrn52_4": {"depth": 16},
           "dia_wrn52_4": {"depth": 16}, "se_resnet164": {"depth": 20}, "preresnet164": {"depth": 20},
           "dia_preresnet164": {"depth": 20}, "se_preresnet164": {"depth": 20}, "resnext101_8x32d": {"depth": 20},
           "dia_resnext101_8x32d": {"depth": 20}}


def _native(name):
    c, s, _ = mixlab.model_cfg(name)["input_size"]
    return c, s


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_and_timm_api(name):
    torch.manual_seed(0)
    _, size = _native(name)
    size = min(size, 64)          # AFFNet's native 256 px is exercised in its own tests
    kw = SHALLOW.get(name, {})
    model = mixlab.create_model(name, num_classes=7, in_chans=3, img_size=size, **kw)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameter received no gradient"
    assert all(torch.isfinite(g).all() for g in grads)

    # batch 1, one channel
    gray = mixlab.create_model(name, num_classes=7, in_chans=1, img_size=size, **kw).eval()
    assert gray(torch.randn(1, 1, size, size)).shape == (1, 7)

    # features: num_classes=0 → pooled features; forward_head(pre_logits) agrees with them
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert torch.allclose(model.forward_head(feats), model.get_classifier()(pooled), atol=1e-5)
        headless = mixlab.create_model(name, num_classes=0, in_chans=3, img_size=size, **kw).eval()
        assert headless(x).shape == (2, headless.num_features)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["ninformer_paper", "vit_tiny", "dia_vit_paper"])
def test_timm_create_model_round_trip(name):
    torch.manual_seed(0)
    ours = mixlab.create_model(name, num_classes=5, in_chans=1, img_size=28)
    theirs = timm.create_model(name, num_classes=5, in_chans=1, img_size=28)
    assert type(theirs) is type(ours)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ours.eval()(x), theirs.eval()(x))
    assert name in timm.list_models("*paper*") + timm.list_models("*tiny*")


@pytest.mark.parametrize("name,count", [("ninformer_paper", 2_652_170), ("activator_paper", 2_650_890),
                                        ("activator_glu_paper", 1_599_242)])
def test_official_parameter_counts(name, count):
    model = mixlab.create_model(name, num_classes=10, in_chans=3, img_size=32)
    assert sum(p.numel() for p in model.parameters()) == count


def test_ninformer_block_breakdown_matches_official_code():
    # papers.md: 659,264 parameters per block, of which the inner Mixer has 330,048 and the projection 65,792
    block = mixlab.create_model("ninformer_paper").blocks[0]
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(block) == 659_264
    assert count(block.token_mixer.mixer_block) == 330_048
    assert count(block.token_mixer.proj) == 65_792
    assert block.norm2 is None and block.share_norm       # one LayerNorm at both sites


def test_cifar100_counts():
    assert sum(p.numel() for p in mixlab.create_model("ninformer_paper", num_classes=100).parameters()) == 2_675_300
    assert sum(p.numel() for p in mixlab.create_model("activator_paper", num_classes=100).parameters()) == 2_674_020


def test_vit_equals_timm_vision_transformer_with_copied_weights():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    cfg = dict(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=3)
    theirs = VisionTransformer(**cfg, num_heads=4, mlp_ratio=2.0, qkv_bias=True, class_token=False,
                               global_pool="avg", fc_norm=False, norm_layer=nn.LayerNorm).eval()
    ours = IsotropicNet(**cfg, mixer="attention", mixer_kwargs={"num_heads": 4}, mlp="mlp", mlp_hidden_dim=128,
                        pos_embed="learn", final_norm=True).eval()
    rename = {".attn.": ".token_mixer.", ".mlp.": ".channel_mlp."}
    state = {}
    for key, value in theirs.state_dict().items():
        for a, b in rename.items():
            key = key.replace(a, b)
        state[key] = value
    ours.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        assert torch.allclose(ours.forward_features(x), theirs.forward_features(x), atol=1e-5)


def test_token_mlp_is_a_linear_map_along_tokens():
    # Independent formulation: out[b, :, c] = W2 gelu(W1 x[b, :, c] + b1) + b2 for every channel c
    torch.manual_seed(0)
    mixer = create_mixer("token_mlp", 6, 16, (4, 4), token_hidden_dim=10).double()
    x = torch.randn(2, 16, 6, dtype=torch.float64)
    w1, b1 = mixer.mlp.fc1.weight, mixer.mlp.fc1.bias
    w2, b2 = mixer.mlp.fc2.weight, mixer.mlp.fc2.bias
    expected = torch.empty_like(x)
    for b in range(2):
        for c in range(6):
            expected[b, :, c] = w2 @ torch.nn.functional.gelu(w1 @ x[b, :, c] + b1) + b2
    assert torch.allclose(mixer(x), expected)


def test_nin_gating_is_projection_times_mixer_block():
    torch.manual_seed(0)
    mixer = create_mixer("nin_gating", 8, 16, (4, 4), hidden_dim=12).double().eval()
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    blk = mixer.mixer_block
    y = x + blk.token_mixer.mlp(blk.norm1(x).transpose(1, 2)).transpose(1, 2)
    m = y + blk.channel_mlp(blk.norm2(y))
    expected = (x @ mixer.proj.weight.T + mixer.proj.bias) * m     # no sigmoid on the gate
    assert torch.allclose(mixer(x), expected)


def test_glu_gating_shares_one_layernorm_and_mixes_no_tokens():
    torch.manual_seed(0)
    mixer = create_mixer("glu_gating", 8, 16, (4, 4), hidden_dim=12).double()
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    ln = nn.functional.layer_norm
    g, b = mixer.norm_gate.weight, mixer.norm_gate.bias
    u = ln(nn.functional.gelu(x @ mixer.w_gate.weight.T + mixer.w_gate.bias), (12,), g, b)
    v = ln(x @ mixer.w_value.weight.T + mixer.w_value.bias, (12,), g, b)
    assert torch.allclose(mixer(x), (u * v) @ mixer.w_out.weight.T + mixer.w_out.bias)
    # per-token: permuting tokens permutes the output
    perm = torch.randperm(16)
    assert torch.allclose(mixer(x[:, perm]), mixer(x)[:, perm])


def test_pooling_mixer_matches_explicit_neighbourhood_mean():
    mixer = create_mixer("pooling", 3, 9, (3, 3))
    x = torch.randn(1, 9, 3, dtype=torch.float64)
    grid = x[0].reshape(3, 3, 3)
    expected = torch.empty_like(grid)
    for i in range(3):
        for j in range(3):
            window = grid[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].reshape(-1, 3)
            expected[i, j] = window.mean(0) - grid[i, j]
    assert torch.allclose(mixer(x)[0], expected.reshape(9, 3))


@pytest.mark.parametrize("name,kwargs", [
    ("attention", {"num_heads": 2}), ("token_mlp", {"token_hidden_dim": 6}), ("nin_gating", {"hidden_dim": 6}),
    ("glu_gating", {"hidden_dim": 6}), ("aff", {"num_groups": 2}), ("pooling", {}), ("identity", {}),
])
def test_mixer_gradcheck_float64(name, kwargs):
    torch.manual_seed(0)
    mixer = create_mixer(name, 4, 6, (2, 3), **kwargs).double().eval()
    if name == "aff":   # a smaller softshrink threshold keeps the check away from its kinks
        mixer.filter.sparsity_threshold = 1e-4
    x = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mixer(t), (x,), eps=1e-6, atol=1e-5)


def test_conv_ffn_gradcheck_and_locality():
    torch.manual_seed(0)
    ffn = ConvFeedForward(4, 8, grid=(3, 3)).double()
    x = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ffn, (x,), eps=1e-6, atol=1e-5)
    # a 3×3 depth-wise kernel: token (0, 0) cannot see token (2, 2)
    x2 = x.detach().clone()
    x2[0, 8] += 1.0
    assert torch.allclose(ffn(x)[0, 0], ffn(x2)[0, 0])


def test_wrong_image_size_names_the_expected_size():
    model = mixlab.create_model("ninformer_paper", num_classes=10, img_size=32)
    with pytest.raises(ValueError, match=r"32×32") as err:
        model(torch.randn(1, 3, 64, 64))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="3-channel"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="token-mixing MLP is built for 16 tokens"):
        create_mixer("token_mlp", 4, 16, (4, 4))(torch.randn(1, 9, 4))


def test_dynamic_size_for_mixers_without_fixed_tokens():
    model = mixlab.create_model("activator_paper", img_size=32).eval()
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 10)


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean.*ninformer_paper"):
        mixlab.create_model("ninformer_papr")


def test_overrides_reach_the_mixer():
    model = mixlab.create_model("vit_paper", depth=2, mixer_kwargs={"num_heads": 4})
    assert len(model.blocks) == 2 and model.blocks[0].token_mixer.num_heads == 4
    assert mixlab.create_model("vit_paper").blocks[0].token_mixer.num_heads == 8


def test_paper_configs_follow_the_official_code():
    for name in ("vit_paper", "mixer_paper", "localvit_paper", "ninformer_paper", "activator_paper",
                 "activator_glu_paper"):
        m = mixlab.create_model(name)
        assert m.embed_dim == 256 and len(m.blocks) == 4 and m.patch_embed.patch_size == 4
        assert m.cls_token is None and m.global_pool == "avg" and isinstance(m.norm, nn.Identity)
        assert (m.pos_embed is not None) == (name in ("vit_paper", "localvit_paper"))
        # dropout 0.5 wherever the official code has dropout; the GLU-only Activator has none at all
        expected = set() if name == "activator_glu_paper" else {0.5}
        assert {mod.p for mod in m.modules() if isinstance(mod, nn.Dropout) and mod.p > 0} == expected
        assert m.pos_drop.p == 0.0                        # no dropout on the embeddings in the official code
    assert mixlab.create_model("activator_glu_paper").blocks[0].channel_mlp is None


def test_a_new_mixer_in_one_file_plugs_into_the_backbone():
    from mixlab.mixers import MIXERS, register_mixer

    @register_mixer("test_max_pool")
    class MaxPoolMixer(nn.Module):
        """out = max over the 3×3 neighbourhood − x."""

        def __init__(self, dim, num_tokens, grid, **cfg):
            super().__init__()
            self.grid = grid

        def forward(self, x, grid=None):
            b, n, c = x.shape
            h, w = grid or self.grid
            img = x.transpose(1, 2).reshape(b, c, h, w)
            return (nn.functional.max_pool2d(img, 3, 1, 1) - img).flatten(2).transpose(1, 2)

    try:
        model = IsotropicNet(img_size=16, patch_size=4, embed_dim=32, depth=2, mixer="test_max_pool",
                             mlp_hidden_dim=64, num_classes=3)
        assert isinstance(model.blocks[0].token_mixer, MaxPoolMixer)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_mixer("test_max_pool")(MaxPoolMixer)
    finally:
        MIXERS.pop("test_max_pool")
