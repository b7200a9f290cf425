"""The DDPM UNet (models/unet.py): the whole network against a from-the-equations forward in float64, with the
shared DIA-LSTM run as an explicit per-block loop (one state per level) and SE as its formula; exact parameter
counts; shapes, gradients, registry and bad input."""
import math

import pytest
import timm
import torch
import torch.nn.functional as F

import mixlab
from mixlab.layers.dia import DIALSTMCell
from mixlab.models.unet import UNet

# Two levels, two blocks a level: enough for every sharing question (several blocks per level on both paths,
# middle blocks on the lowest level), tiny enough for float64 on one thread.
SMALL = dict(base_chans=8, chan_mult=(1, 2), num_res_blocks=2, norm_groups=2, drop_rate=0.0)
NAMES = [f"{v}_{s}" for s in ("tiny", "small") for v in ("unet", "se_unet", "dia_unet")]


def randomize(model):
    """Every parameter non-zero (DDPM zero-initialises the last conv of each branch, which would hide R).
    Biases and norm scales are positive, so no ReLU of a small SE/DIA bottleneck is dead by chance."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 if p.ndim > 1 else torch.rand_like(p) * 0.4 + 0.1)
    return model


def lstm_step(cell, x, h, c):
    """DIANet's cell from its equations: [i, f, g, o] = φ_x(x) + φ_h(h), φ(v) = W₂ ReLU(W₁ v + b₁) + b₂;
    c' = σ(f)c + σ(i)tanh(g); h' = σ(o)σ(c')."""
    def phi(mlp, v):
        return F.linear(torch.relu(F.linear(v, mlp[0].weight, mlp[0].bias)), mlp[2].weight, mlp[2].bias)

    i, f, g, o = (phi(cell.input_map, x) + phi(cell.hidden_map, h)).split(cell.channels, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.sigmoid(c), c


def se_gate(se, r):
    """SE from its formula: σ(W₂ ReLU(W₁ GAP(R) + b₁) + b₂) (the 1×1 convs as matrices)."""
    w1, w2 = se.fc1.weight[:, :, 0, 0], se.fc2.weight[:, :, 0, 0]
    return torch.sigmoid(F.linear(torch.relu(F.linear(r.mean(dim=(2, 3)), w1, se.fc1.bias)), w2, se.fc2.bias))


def branches(block, x, e):
    """(R, S) of a residual block written out: R = conv₂(SiLU(GN(conv₁(SiLU(GN(x))) + W_e e)))."""
    def gn(norm, v):
        return F.group_norm(v, norm.num_groups, norm.weight, norm.bias, norm.eps)

    h = F.conv2d(F.silu(gn(block.norm1, x)), block.conv1.weight, block.conv1.bias, padding=1)
    h = h + (e @ block.emb_proj.weight.T + block.emb_proj.bias)[:, :, None, None]
    r = F.conv2d(F.silu(gn(block.norm2, h)), block.conv2.weight, block.conv2.bias, padding=1)
    s = x if isinstance(block.shortcut, torch.nn.Identity) else F.conv2d(x, block.shortcut.weight, block.shortcut.bias)
    return r, s


def attention(attn, x):
    """x + W_o softmax(QKᵀ/√C) V over the H·W positions, written with explicit matrices."""
    b, c, hh, ww = x.shape
    n = F.group_norm(x, attn.norm.num_groups, attn.norm.weight, attn.norm.bias, attn.norm.eps).flatten(2)
    q, k, v = (attn.qkv.weight[:, :, 0, 0] @ n + attn.qkv.bias[:, None]).split(c, dim=1)   # [B, C, HW]
    a = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)                        # [B, HW, HW]
    out = (v @ a.transpose(1, 2))
    return x + (attn.proj.weight[:, :, 0, 0] @ out + attn.proj.bias[:, None]).view(b, c, hh, ww)


def reference_forward(model, x, t, mode, dia_state="carry"):
    """The UNet of the module docstring, step by step. mode: 'plain' | 'se' | 'dia'. dia_state: 'carry' (one
    state per level through down, middle and up blocks), 'reset' (zero before every block) or 'split' (the up
    path of a level restarts at zero) — the last two are the alternatives the model must *not* compute."""
    half = model.base_chans // 2
    freqs = torch.tensor([10000.0 ** (-k / (half - 1)) for k in range(half)], dtype=x.dtype)
    sinusoid = torch.cat([torch.sin(t[:, None].to(x.dtype) * freqs), torch.cos(t[:, None].to(x.dtype) * freqs)], 1)
    l1, l2 = model.time_embed[0], model.time_embed[2]
    e = F.silu(F.linear(F.silu(F.linear(sinusoid, l1.weight, l1.bias)), l2.weight, l2.bias))
    states = {}

    def block(blk, h, level):
        r, s = branches(blk, h, e)
        if mode == "se":
            r = r * se_gate(blk.se, r)[:, :, None, None]
        elif mode == "dia":
            cell = model.dia[level]
            zero = torch.zeros(len(h), cell.channels, dtype=h.dtype)
            hs, cs = states.get(level, (zero, zero)) if dia_state != "reset" else (zero, zero)
            hs, cs = lstm_step(cell, r.mean(dim=(2, 3)), hs, cs)
            states[level] = (hs, cs)
            r = r * hs[:, :, None, None]
        return s + r

    h = F.conv2d(x, model.stem.weight, model.stem.bias, padding=1)
    skips = [h]
    for level, stage in enumerate(model.down):
        for blk in stage.blocks:
            h = block(blk, h, level)
            skips.append(h)
        if stage.resample is not None:
            h = F.conv2d(h, stage.resample.weight, stage.resample.bias, stride=2, padding=1)
            skips.append(h)
    lowest = len(model.down) - 1
    h = block(model.mid[1], attention(model.mid_attn, block(model.mid[0], h, lowest)), lowest)
    for level, stage in zip(reversed(range(len(model.down))), model.up):
        if dia_state == "split" and level != lowest:
            states.pop(level, None)
        for blk in stage.blocks:
            h = block(blk, torch.cat([h, skips.pop()], dim=1), level)
        if stage.resample is not None:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = F.conv2d(h, stage.resample.conv.weight, stage.resample.conv.bias, padding=1)
    h = F.silu(F.group_norm(h, model.out_norm.num_groups, model.out_norm.weight, model.out_norm.bias))
    return F.conv2d(h, model.out_conv.weight, model.out_conv.bias, padding=1)


@pytest.mark.parametrize("mode", ["plain", "se", "dia"])
def test_unet_equals_reference_forward_float64(mode):
    model = randomize(UNet(in_chans=2, img_size=8, dia=mode == "dia", se=mode == "se", se_reduction=4,
                           **SMALL)).double().eval()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 17, 999])
    with torch.no_grad():
        y = model(x, t)
        torch.testing.assert_close(y, reference_forward(model, x, t, mode), rtol=1e-10, atol=1e-10)
        if mode == "dia":
            # The state is carried from block to block, and from a level's down blocks to its up blocks.
            for alternative in ("reset", "split"):
                assert not torch.allclose(y, reference_forward(model, x, t, mode, alternative), atol=1e-6)


def test_dia_shares_one_cell_per_level():
    model = UNet(in_chans=1, img_size=8, dia=True, **SMALL)
    cells = [m for m in model.modules() if isinstance(m, DIALSTMCell)]
    assert len(cells) == 2 and [c.channels for c in cells] == [8, 16]
    assert all(blk.se is None for blk in model.modules() if hasattr(blk, "branches"))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def dia_cell_params(c, r=4):
    return 2 * (c * (c // r) + c // r + (c // r) * 4 * c + 4 * c)      # φ_x and φ_h: C → C/r → 4C


def se_params(c, r=16):
    return c * (c // r) + c // r + (c // r) * c + c                     # C → C/r → C with biases


@pytest.mark.parametrize("num_res_blocks", [1, 2, 3])
def test_dia_adds_parameters_per_level_and_se_per_block(num_res_blocks):
    cfg = dict(SMALL, base_chans=32, norm_groups=8, chan_mult=(1, 2, 2), num_res_blocks=num_res_blocks)
    plain = n_params(UNet(**cfg))
    widths = (32, 64, 64)
    assert n_params(UNet(dia=True, **cfg)) - plain == sum(dia_cell_params(c) for c in widths) == 24_400
    # SE: one module in each of the n down blocks, n + 1 up blocks, and the 2 middle blocks
    blocks = [2 * num_res_blocks + 1 + (2 if level == 2 else 0) for level in range(3)]
    assert n_params(UNet(se=True, **cfg)) - plain == sum(b * se_params(c) for b, c in zip(blocks, widths))


def expected_unet_params(in_chans, base, mult, n, mid_attention=True):
    """Parameters of the UNet of the docstring, counted layer by layer."""
    conv = lambda ci, co, k: ci * co * k * k + co
    lin = lambda i, o: i * o + o
    res = lambda ci, co: 2 * ci + conv(ci, co, 3) + lin(4 * base, co) + 2 * co + conv(co, co, 3) + \
        (conv(ci, co, 1) if ci != co else 0)
    widths = [base * m for m in mult]
    total = lin(base, 4 * base) + lin(4 * base, 4 * base) + conv(in_chans, base, 3)
    skips, cur = [base], base
    for level, w in enumerate(widths):
        for _ in range(n):
            total, cur = total + res(cur, w), w
            skips.append(w)
        if level < len(widths) - 1:
            total += conv(cur, cur, 3)
            skips.append(cur)
    total += 2 * res(cur, cur) + (2 * cur + conv(cur, 3 * cur, 1) + conv(cur, cur, 1) if mid_attention else 0)
    for level in reversed(range(len(widths))):
        for _ in range(n + 1):
            total, cur = total + res(cur + skips.pop(), widths[level]), widths[level]
        if level > 0:
            total += conv(cur, cur, 3)
    return total + 2 * cur + conv(cur, in_chans, 3)


def test_registered_parameter_counts():
    counts = {(name, c): n_params(mixlab.create_model(name, in_chans=c, img_size=28 if c == 1 else 32))
              for name in NAMES for c in (1, 3)}
    for c in (1, 3):
        assert counts["unet_tiny", c] == expected_unet_params(c, 32, (1, 2, 2), 1)
        assert counts["unet_small", c] == expected_unet_params(c, 64, (1, 2, 2), 2)
        assert counts["dia_unet_tiny", c] - counts["unet_tiny", c] == 24_400
        assert counts["dia_unet_small", c] - counts["unet_small", c] == sum(dia_cell_params(w) for w in (64, 128, 128))
        assert counts["se_unet_tiny", c] - counts["unet_tiny", c] == 3 * se_params(32) + 8 * se_params(64)
        assert counts["se_unet_small", c] - counts["unet_small", c] == 5 * se_params(64) + 12 * se_params(128)
    assert counts["unet_tiny", 3] == 1_063_651 and counts["unet_small", 3] == 6_140_675
    assert mixlab.model_cfg("dia_unet_tiny")["family"] == "unet"
    assert mixlab.model_cfg("dia_unet_tiny")["num_classes"] == 0


@pytest.mark.parametrize("name", ["unet_tiny", "se_unet_tiny", "dia_unet_tiny"])
def test_shapes_gradients_and_timm(name):
    torch.manual_seed(0)
    model = mixlab.create_model(name, in_chans=1, img_size=28)
    randomize(model)                    # so every parameter gets a non-zero gradient
    x = torch.randn(2, 1, 28, 28)
    out = model(x, torch.tensor([3, 500]))
    assert out.shape == x.shape
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # Every parameter learns; an SE bottleneck of C/16 = 2 ReLUs may be dead for one batch, so there only its
    # output bias must receive a gradient.
    dead_relu_ok = (".se.fc1.", ".se.fc2.weight")
    assert all(g.abs().sum() > 0 for n, g in grads.items() if not any(k in n for k in dead_relu_ok))
    model.eval()
    with torch.no_grad():   # a scalar t is broadcast; 32 px and 3 channels work at the native config too
        assert torch.equal(model(x, 7), model(x, torch.tensor([7, 7])))
        assert mixlab.create_model(name).eval()(torch.randn(1, 3, 32, 32), 0).shape == (1, 3, 32, 32)
    theirs = timm.create_model(name, in_chans=1, img_size=28)
    assert type(theirs) is UNet and n_params(theirs) == n_params(model)


def test_fresh_unet_predicts_zero_noise():
    # DDPM's zero init: every residual branch and the output conv start at zero, so ε̂ = 0 before training.
    model = mixlab.create_model("dia_unet_tiny", in_chans=1, img_size=28)
    assert torch.equal(model(torch.randn(2, 1, 28, 28), 10), torch.zeros(2, 1, 28, 28))


def test_bad_input_gets_one_line_errors():
    cases = [
        (lambda: mixlab.create_model("unet_tiny", num_classes=10), "num_classes must be 0"),
        (lambda: UNet(dia=True, se=True), "dia=True or se=True"),
        (lambda: UNet(img_size=30), "divisible by 4"),
        (lambda: UNet(base_chans=12, norm_groups=8), "divisible by norm_groups"),
        (lambda: UNet(in_chans=1, img_size=8, **SMALL)(torch.randn(1, 3, 8, 8), 0), r"\[B, 1, H, W\]"),
        (lambda: UNet(in_chans=1, img_size=8, **SMALL)(torch.randn(1, 1, 9, 9), 0), "divisible by 2"),
        (lambda: UNet(in_chans=1, img_size=8, **SMALL)(torch.randn(2, 1, 8, 8), torch.zeros(3)), "one timestep"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            make()
        assert "\n" not in str(err.value)


def test_models_list_and_bench_handle_the_denoisers(capsys):
    """The registry says what a UNet is (no classes, a diffusion task, the ddpm recipe); `mixlab models` lists
    them with 0 classes and `bench` measures x ↦ ε̂(x, t) through its one-input adapter."""
    from mixlab.bench import BenchConfig
    from mixlab.bench.run import bench_model
    from mixlab.cli import main

    cfg = mixlab.model_cfg("se_unet_small")
    assert (cfg["num_classes"], cfg["task"], cfg["recipe"]) == (0, "diffusion", "ddpm")
    assert main(["models", "*unet_tiny", "--img-size", "28", "--in-chans", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    model = mixlab.create_model("dia_unet_tiny", in_chans=1, img_size=28)
    assert [ln.split()[0] for ln in lines] == ["dia_unet_tiny", "se_unet_tiny", "unet_tiny"]
    assert lines[0].split()[3] == f"{n_params(model):,}"
    row = bench_model("unet_tiny", BenchConfig(batch_size=2, warmup=1, repeats=1, img_size=16, threads=1,
                                               memory=False).resolved())
    assert row["status"] == "ok" and row["family"] == "unet" and "peer" not in row
    assert row["params"] == n_params(mixlab.create_model("unet_tiny", img_size=16))
    assert 0 < row["flops_fwd"] < row["flops_fwd_bwd"] and row["train_step_ms"] > 0
