"""The token-mixer contract (capabilities as class attributes, exactly-own keyword options, one-line errors),
the class token on the token-mixing mixers, Activator's gate dropout, and saving a directly built IsotropicNet
(the README's "adding a token mixer in one file" example, run as written)."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mixlab
from mixlab.cli import main
from mixlab.layers import ConvFeedForward, capabilities
from mixlab.mixers import MIXERS, register_mixer
from mixlab.models import IsotropicNet

README = Path(__file__).resolve().parents[1] / "README.md"


def test_builtin_mixers_declare_their_capabilities():
    table = {name: capabilities(cls) for name, cls in MIXERS.items() if not name.startswith("test_")}
    assert table == {
        "attention": dict(fixed_tokens=False, needs_grid=False, supports_class_token=True),
        "token_mlp": dict(fixed_tokens=True, needs_grid=False, supports_class_token=True),
        "nin_gating": dict(fixed_tokens=True, needs_grid=False, supports_class_token=True),
        "glu_gating": dict(fixed_tokens=False, needs_grid=False, supports_class_token=False),
        "aff": dict(fixed_tokens=False, needs_grid=True, supports_class_token=False),
        "pooling": dict(fixed_tokens=False, needs_grid=True, supports_class_token=False),
        "identity": dict(fixed_tokens=False, needs_grid=False, supports_class_token=False),
        "random": dict(fixed_tokens=True, needs_grid=False, supports_class_token=False),
        "dwconv": dict(fixed_tokens=False, needs_grid=True, supports_class_token=False),
    }
    # the backbone reads them: fixed-token mixers fix the image size, the others take any multiple of the patch
    assert not mixlab.create_model("mixer_paper").patch_embed.dynamic_img_size
    assert mixlab.create_model("activator_paper").patch_embed.dynamic_img_size


@pytest.mark.parametrize("name,kwargs,match", [
    ("vit_paper", dict(mixer_kwargs={"num_head": 4}),
     "token mixer 'attention' has no option 'num_head'; its options are: attn_drop, num_heads, proj_drop, qkv_bias"),
    ("activator_paper", dict(mixer_kwargs={"drop": 0.1}),
     "token mixer 'glu_gating' has no option 'drop'; its options are: act, gate_drop, hidden_dim, share_norm, use_norm"),
    ("localvit_paper", dict(mlp_kwargs={"kernel": 5}),
     "channel MLP 'conv_mlp' has no option 'kernel'; its options are: act_layer, drop, kernel_size"),
    ("vit_paper", dict(bogus=1), "vit_paper takes no argument 'bogus'; its arguments are: .*mixer_kwargs"),
    ("vit_paper", dict(depth="abc"), "vit_paper: depth must be an integer, got 'abc'"),
    ("vit_paper", dict(class_token=1), "vit_paper: class_token must be a bool, got 1"),
    ("resnet164", dict(widen=2), "resnet164 takes no argument 'widen'; its arguments are: .*widen_factor"),
    ("affnet_t", dict(mixer="aff"), "affnet_t takes no argument 'mixer'"),
])
def test_a_wrong_keyword_is_a_one_line_error(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        mixlab.create_model(name, **kwargs)
    assert "\n" not in str(err.value)


def test_the_cli_model_kwargs_get_the_same_error(tmp_path, capsys):
    code = main(["train", "--model", "vit_paper", "--data", "synthetic:32x3x32x32:4", "--epochs", "1",
                 "--device", "cpu", "--out", str(tmp_path / "run"), "--model-kwargs", '{"mixer_kwargs": {"heads": 2}}'])
    last = capsys.readouterr().err.strip().splitlines()[-1]       # earlier lines: the data loader's log
    assert code == 1 and last.startswith("mixlab train: error: token mixer 'attention' has no option 'heads'; "
                                         "its options are: attn_drop, num_heads")


def test_register_mixer_reads_the_class_and_keeps_the_fixed_tokens_argument():
    @register_mixer("test_fixed")
    class Fixed(nn.Module):
        def __init__(self, dim, num_tokens, grid):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(num_tokens, 1))

        def forward(self, x, grid=None):
            return x * self.weight

    try:
        assert capabilities(Fixed) == dict(fixed_tokens=False, needs_grid=False, supports_class_token=False)
        assert mixlab.models.IsotropicNet(mixer="test_fixed", depth=1).patch_embed.dynamic_img_size
        Fixed.fixed_tokens = True      # the class attribute is the capability
        assert Fixed.fixed_tokens and not IsotropicNet(mixer="test_fixed", depth=1).patch_embed.dynamic_img_size
        with pytest.raises(ValueError, match="does not declare supports_class_token"):
            IsotropicNet(mixer="test_fixed", depth=1, class_token=True, global_pool="token")
    finally:
        MIXERS.pop("test_fixed", None)


# --- class token ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["vit_paper", "mixer_paper"])
@pytest.mark.parametrize("pool", ["token", "avg"])
@pytest.mark.parametrize("pos_embed", ["learn", "none"])
def test_vit_vs_mixer_grid_builds_and_trains(base, pool, pos_embed):
    """mixer ∈ {attention, token MLP} × pooling ∈ {class token, mean} × position embedding ∈ {learned, none}."""
    torch.manual_seed(0)
    model = mixlab.create_model(base, class_token=pool == "token", global_pool=pool, pos_embed=pos_embed, depth=2,
                                drop_rate=0.0)
    n = 64 + (pool == "token")
    assert (model.pos_embed is not None) == (pos_embed == "learn")
    if pos_embed == "learn":
        assert model.pos_embed.shape == (1, n, 256)
    if base == "mixer_paper":   # the token MLP mixes all N (+1) tokens: its weights have N (+1) rows
        assert model.blocks[0].token_mixer.mlp.fc1.in_features == n
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer.step()
    assert torch.isfinite(loss) and all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_class_token_pooling_reads_the_class_token_the_mixer_mixed():
    torch.manual_seed(0)
    model = mixlab.create_model("ninformer_paper", class_token=True, global_pool="token", depth=1).eval()
    assert model.blocks[0].token_mixer.num_tokens == 65
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)
        torch.testing.assert_close(model(x), model.head(tokens[:, 0]))
        # the class token is mixed with the patches: changing one patch changes it
        x2 = x.clone()
        x2[:, :, :4, :4] += 1
        assert not torch.allclose(model.forward_features(x2)[:, 0], tokens[:, 0])


@pytest.mark.parametrize("mixer,why", [("aff", "works on the patch grid"), ("pooling", "works on the patch grid"),
                                       ("glu_gating", "does not declare supports_class_token"),
                                       ("identity", "does not declare supports_class_token")])
def test_mixers_without_class_token_support_refuse_it(mixer, why):
    with pytest.raises(ValueError, match=f"token mixer '{mixer}' {why} and cannot take a class token") as err:
        IsotropicNet(mixer=mixer, depth=1, class_token=True, global_pool="token")
    assert "\n" not in str(err.value)


def test_conv_ffn_passes_the_class_token_through_untouched():
    torch.manual_seed(0)
    ffn = ConvFeedForward(8, 16, num_tokens=17, grid=(4, 4)).double()
    x = torch.randn(2, 17, 8, dtype=torch.float64)
    out = ffn(x)
    assert torch.equal(out[:, 0], torch.zeros(2, 8, dtype=torch.float64))       # a zero update: x + 0 = x
    plain = ConvFeedForward(8, 16, num_tokens=16, grid=(4, 4)).double()
    plain.load_state_dict(ffn.state_dict())
    torch.testing.assert_close(out[:, 1:], plain(x[:, 1:]))
    model = mixlab.create_model("localvit_paper", class_token=True, global_pool="token", depth=1)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- Activator gate dropout -----------------------------------------------------------------------------------
def _dropout_sites_that_fire(model, x):
    fired = []
    hooks = [m.register_forward_hook(lambda mod, i, o: fired.append(mod))
             for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    model.train()(x)
    for h in hooks:
        h.remove()
    return len(fired)


@pytest.mark.parametrize("name,sites,params", [("activator_paper", 8, 2_650_890), ("activator_glu_paper", 0, 1_599_242),
                                               ("ninformer_paper", 24, 2_652_170)])
def test_dropout_sites_match_the_official_code(name, sites, params):
    """Official code: Activator 4 blocks × FFN(2 dropouts) = 8, its GLU-only variant none, NiNformer 4 × (inner
    Mixer 4 + FFN 2) = 24; the gating unit itself has none."""
    model = mixlab.create_model(name)
    assert _dropout_sites_that_fire(model, torch.randn(2, 3, 32, 32)) == sites
    assert sum(p.numel() for p in model.parameters()) == params


def test_gate_drop_is_an_explicit_option_not_the_backbone_drop_rate():
    model = mixlab.create_model("activator_paper", mixer_kwargs={"gate_drop": 0.2})
    assert _dropout_sites_that_fire(model, torch.randn(2, 3, 32, 32)) == 12
    assert {b.token_mixer.gate_drop.p for b in model.blocks} == {0.2}
    assert all(isinstance(b.token_mixer.gate_drop, nn.Identity)
               for b in mixlab.create_model("activator_paper", drop_rate=0.3).blocks)


# --- the README example: a mixer in one file, saved and loaded ------------------------------------------------
def _readme_example():
    section = README.read_text().split("## Adding a token mixer in one file", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_mixer_example_saves_and_loads(tmp_path, monkeypatch):
    (tmp_path / "my_mixer.py").write_text(_readme_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    names_before = set(MIXERS)
    try:
        module = importlib.import_module("my_mixer")
        added = set(MIXERS) - names_before
        assert added, "the README example registers no mixer"
        model = module.model.eval()
        x = torch.randn(2, model.in_chans, model.img_size, model.img_size)
        mixlab.save(model, tmp_path / "saved")
        loaded = mixlab.load(tmp_path / "saved")
        assert type(loaded) is type(model)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        # without the mixer's module imported, loading says what to do in one line
        saved = {n: MIXERS.pop(n) for n in added}
        with pytest.raises(ValueError, match="unknown token mixer .*import the module that registers it") as err:
            mixlab.load(tmp_path / "saved")
        assert "\n" not in str(err.value)
        MIXERS.update(saved)
    finally:
        for n in set(MIXERS) - names_before:
            MIXERS.pop(n)
        sys.modules.pop("my_mixer", None)
