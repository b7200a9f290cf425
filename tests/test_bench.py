"""mixlab.bench: FLOP counts against analytic per-layer formulas, the ops FlopCounterMode misses, timing,
memory, exponent fitting, timm peers, and the `mixlab bench` CLI end to end (tiny configs, CPU)."""
import json
import math
import time

import pytest
import torch
from torch import nn

import mixlab
from mixlab.bench import BenchConfig, count_flops, fft_flops, fit_exponent, model_flops, peak_memory, time_step
from mixlab.bench.report import format_table, load_accuracy, plot_accuracy_vs_flops
from mixlab.bench.run import run_bench
from mixlab.cli import main

# A small isotropic setting: 16 px, patch 4 → N = 16 tokens on a 4×4 grid, width 32, hidden 48, depth 2.
S, P, D, H, L, C_IN, CLASSES = 16, 4, 32, 48, 2, 3, 10
N = (S // P) ** 2


def small(name, **mixer_kwargs):
    return mixlab.create_model(name, img_size=S, embed_dim=D, depth=L, mlp_hidden_dim=H,
                               mixer_kwargs=mixer_kwargs)


def fwd(model):
    return model_flops(model, (C_IN, S, S))


def rfft2_flops(c, h, w):
    return c * 2.5 * h * w * math.log2(h * w)


# Analytic forward FLOPs per image of one block's token mixer (FLOPs = 2·MACs, matmuls only).
MIXER_FORMULAS = {
    "vit_paper": (dict(num_heads=4), 2 * (3 * N * D * D + 2 * N * N * D + N * D * D)),
    "mixer_paper": (dict(token_hidden_dim=H), 2 * (2 * N * H * D)),
    "activator_paper": (dict(hidden_dim=H), 2 * (3 * N * D * H)),
    # projection Z·W_p + the inner Mixer block (token MLP N→H→N and channel MLP D→H→D)
    "ninformer_paper": (dict(hidden_dim=H), 2 * (N * D * D + 2 * N * H * D + 2 * N * D * H)),
    # rfft2 + irfft2 (2.5·N·log2 N per channel each) + two grouped complex layers of 4 real matmuls each,
    # on H·(W/2+1) frequencies, 8 groups of D/8 channels
    "aff_paper_size": (dict(num_groups=8), round(2 * rfft2_flops(D, 4, 4)) + 2 * 4 * 2 * (4 * 3) * D * (D // 8)),
}


@pytest.mark.parametrize("name", sorted(MIXER_FORMULAS))
def test_forward_flops_match_the_per_layer_formulas(name):
    kwargs, mixer = MIXER_FORMULAS[name]
    report = fwd(small(name, **kwargs))
    b = report.breakdown
    assert b["mixer"] == L * mixer
    assert b["channel_mlp"] == L * 2 * (2 * N * D * H)
    assert b["embed"] == 2 * N * (C_IN * P * P) * D
    assert b["head"] == 2 * D * CLASSES
    assert b["other"] == 0 and b["dia"] == 0
    assert report.total == sum(b.values())


def test_fft_is_counted_with_the_stated_convention():
    x = torch.randn(2, 3, 8, 8)
    assert count_flops(lambda: torch.fft.rfft2(x)).total == 2 * 3 * 2.5 * 64 * 6
    spec = torch.fft.rfft2(x)
    assert count_flops(lambda: torch.fft.irfft2(spec, s=(8, 8))).total == 2 * 3 * 2.5 * 64 * 6
    z = torch.randn(4, 16, dtype=torch.complex64)
    assert count_flops(lambda: torch.fft.fft(z)).total == 4 * 5 * 16 * 4
    assert fft_flops((5, 1), [1]) == 0


def test_attention_is_counted_once_fused_or_decomposed():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    b, h, n, dh = 2, 4, 16, 8
    q = torch.randn(b, h, n, dh)
    expected = 2 * 2 * b * h * n * n * dh          # QKᵀ and AV
    attn = lambda: nn.functional.scaled_dot_product_attention(q, q, q)
    assert count_flops(attn).total == expected          # fused CPU kernel (counted 0 by the stock counter)
    with sdpa_kernel(SDPBackend.MATH):
        assert count_flops(attn).total == expected      # decomposed into bmm


def test_grouped_conv_backward_costs_one_forward_per_gradient():
    for groups in (1, 16):
        conv = nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False)
        x = torch.randn(2, 16, 8, 8, requires_grad=True)
        forward = count_flops(lambda: conv(x)).total
        assert forward == 2 * 2 * 16 * 64 * (16 // groups) * 9
        both = count_flops(lambda: conv(x).sum().backward()).total
        assert both == 3 * forward                      # forward + grad_input + grad_weight


def test_lstm_flops_match_the_formula_fused_or_decomposed():
    t, b, i, h = 5, 2, 12, 16
    lstm, x = nn.LSTM(i, h, num_layers=2), torch.randn(t, b, i)
    expected = 2 * t * b * 4 * h * ((i + h) + (h + h))   # two layers: W_ih·x and W_hh·h per step
    with torch.no_grad():
        assert count_flops(lambda: lstm(x)).total == expected
        with torch.backends.mkldnn.flags(enabled=False):
            assert count_flops(lambda: lstm(x)).total == expected


def test_forward_backward_is_three_forwards_for_matmul_models():
    model = small("activator_paper", hidden_dim=H)
    f, fb = fwd(model), model_flops(model, (C_IN, S, S), backward=True)
    # every matmul costs twice its forward in backward; the patch embedding needs no grad w.r.t. the image
    assert fb.total == 3 * f.total - f.breakdown["embed"]


def test_time_step_takes_the_median_after_warmup():
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.01)

    t = time_step(step, "cpu", warmup=2, repeats=3, inner=2)
    assert len(calls) == 2 + 3 * 2
    assert 0.009 < t["median"] < 0.1 and len(t["repeats"]) == 3
    with pytest.raises(ValueError, match="repeats"):
        time_step(step, "cpu", repeats=0)


def test_cpu_peak_memory_sees_transient_allocations():
    mib = 2 ** 20

    def step():
        a = torch.ones(4 * mib, dtype=torch.uint8)
        b = torch.ones(8 * mib, dtype=torch.uint8)
        del a, b
        torch.ones(1 * mib, dtype=torch.uint8)

    peak = peak_memory(step, "cpu", resident_bytes=3 * mib)
    assert 15 * mib <= peak < 15.5 * mib


def test_fit_exponent():
    n = [64, 256, 1024]
    assert fit_exponent(n, [3 * v ** 2 for v in n]) == pytest.approx(2.0)
    assert fit_exponent(n, [5 * v for v in n]) == pytest.approx(1.0)
    assert fit_exponent([64], [1.0]) is None


def test_run_bench_rows_and_timm_peer_ratios():
    cfg = BenchConfig(batch_size=2, warmup=1, repeats=1, img_size=16, threads=1)
    rows = run_bench(["vit_paper"], cfg)
    mine, peer = rows
    assert peer["model"].startswith("timm_vit") and mine["peer"] == peer["model"]
    for key in ("params", "flops_fwd", "flops_fwd_bwd", "infer_throughput", "train_throughput",
                "infer_memory_mb", "train_memory_mb"):
        assert mine[key] > 0, key
    # same configuration: identical FLOPs; params differ only by timm's fc_norm LayerNorm (2·256)
    assert mine["ratio_flops_fwd"] == 1.0
    assert peer["params"] - mine["params"] == 2 * 256
    assert mine["train_memory_mb"] > mine["infer_memory_mb"]
    assert "vit_paper" in format_table(rows)
    with pytest.raises(ValueError, match="precision"):
        run_bench(["vit_paper"], BenchConfig(precision="fp8"))


def test_cli_bench_writes_json_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = ["bench", "--models", "mixer_paper", "--img-size", "16", "--batch-size", "2", "--warmup", "1",
            "--repeats", "1", "--no-train", "--json", str(out), "--csv", str(tmp_path / "b.csv"),
            "--plot-dir", str(tmp_path / "plots")]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["torch"] == torch.__version__ and "2.5" in data["meta"]["flop_convention"]
    names = [r["model"] for r in data["rows"]]
    assert names[0] == "mixer_paper" and names[1].startswith("timm_mixer")
    assert data["rows"][0]["ratio_flops_fwd"] == pytest.approx(1.0)   # same config as timm's MlpMixer
    assert (tmp_path / "b.csv").read_text().startswith("model,")
    assert (tmp_path / "plots" / "bench.png").stat().st_size > 0


def test_cli_sweep_fits_exponents(tmp_path):
    out = tmp_path / "s.json"
    argv = ["bench", "--sweep", "--families", "attention,token_mlp", "--sizes", "8,16", "--batch-size", "1",
            "--warmup", "1", "--repeats", "1", "--no-train", "--no-memory", "--json", str(out),
            "--plot-dir", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["tokens"] for r in data["rows"]] == [4, 16, 4, 16]
    # token MLP with a fixed hidden size: mixer FLOPs linear in N; attention's grows faster than linear
    assert data["exponents"]["token_mlp"]["flops_fwd_mixer"]["exponent"] == pytest.approx(1.0)
    assert data["exponents"]["attention"]["flops_fwd_mixer"]["exponent"] > 1.0
    assert (tmp_path / "throughput_vs_tokens.png").exists() and (tmp_path / "memory_vs_tokens.png").exists()


def test_cli_bad_input_is_one_line(capsys):
    assert main(["bench", "--sweep", "--families", "attention,nope"]) == 1
    assert "unknown sweep family" in capsys.readouterr().err
    assert main(["bench", "--models", "vit_papr"]) == 1
    assert "did you mean" in capsys.readouterr().err


def test_accuracy_vs_flops_plot(tmp_path):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps([{"model": "vit_paper", "test_top1": 0.61}, {"model": "vit_paper", "test_top1": 0.63}]))
    assert load_accuracy(acc) == {"vit_paper": pytest.approx(62.0)}
    path = plot_accuracy_vs_flops([{"model": "vit_paper", "flops_fwd": 2.9e8}], load_accuracy(acc), tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0 and path.endswith("a.png")
    with pytest.raises(FileNotFoundError):
        load_accuracy(tmp_path / "missing.json")


def test_accuracy_reader_reads_reproduce_rows_and_never_mixes_datasets(tmp_path):
    from mixlab.bench.report import load_accuracy
    rows = [{"model": "vit_paper", "dataset": "mnist", "top1_mean": 98.0},
            {"model": "vit_paper", "dataset": "cifar10-jpeg", "top1_mean": 70.0},
            {"model": "ninformer_paper", "dataset": "cifar10-jpeg", "top1_mean": 75.0}]
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match="several datasets"):
        load_accuracy(path)
    assert load_accuracy(path, "cifar10-jpeg") == {"vit_paper": 70.0, "ninformer_paper": 75.0}
    with pytest.raises(ValueError, match="no results on 'cifar100'"):
        load_accuracy(path, "cifar100")
