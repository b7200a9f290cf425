"""The fast CPU dropout mask (mixlab.layers.dropout): its law, its gradient, where the recipes use it, and that a
run with it resumes bit-exactly."""
import csv
import math

import pytest
import torch
import torch.nn as nn

import mixlab
from mixlab.layers.dropout import FastDropout, fast_dropout_mask, kept_fraction, use_fast_dropout
from mixlab.train import TrainConfig, train
from mixlab.train.recipes import load_recipe


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_mask_keeps_each_entry_with_probability_one_minus_p_independently(p):
    g = torch.Generator().manual_seed(0)
    n = 1 << 20
    keep = fast_dropout_mask(torch.Size([n]), p, g).double()
    q = kept_fraction(p)
    assert abs(q - (1 - p)) <= 2 ** -17
    sigma = math.sqrt(q * (1 - q) / n)
    assert abs(keep.mean().item() - q) < 5 * sigma
    # the four int16 lanes of one int64 word are independent: pairs of neighbours and lanes agree with q², q
    pairs = (keep[0::2] * keep[1::2]).mean().item()
    assert abs(pairs - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / (n // 2))
    lanes = keep.view(-1, 4).mean(0)
    assert torch.all((lanes - q).abs() < 5 * math.sqrt(q * (1 - q) / (n // 4)))


def test_forward_is_unbiased_and_the_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    drop = FastDropout(0.5)
    x = torch.rand(64, 256, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / kept_fraction(0.5))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / kept_fraction(0.5))
    torch.manual_seed(1)
    mean = torch.stack([drop(torch.ones(4096)) for _ in range(64)]).mean()
    assert abs(mean.item() - 1.0) < 5 * math.sqrt(1.0 / (64 * 4096))
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0).train()(x) is x
    assert torch.count_nonzero(FastDropout(1.0).train()(x)) == 0


def test_use_fast_dropout_swaps_every_plain_dropout_and_keeps_the_state_dict():
    model = mixlab.create_model("mixer_paper", num_classes=10, img_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = [m.p for m in model.modules() if type(m) is nn.Dropout]
    assert use_fast_dropout(model) == len(plain) and plain
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert sorted(m.p for m in model.modules() if isinstance(m, FastDropout)) == sorted(plain)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)


def test_paper_recipes_keep_torch_dropout_and_mixlabs_own_recipes_use_the_fast_mask():
    assert {name: load_recipe(name).fast_dropout for name in ("paper", "dianet", "ddpm", "mixlab", "strong", "speed")} \
        == {"paper": False, "dianet": False, "ddpm": False, "mixlab": True, "strong": True, "speed": True}


def _rows(run):
    with open(run / "metrics.csv") as f:
        return [(r["epoch"], r["train_loss"], r["test_loss"], r["test_top1"]) for r in csv.DictReader(f)]


def test_a_run_with_the_fast_mask_resumes_bit_exactly_and_differs_from_torch_dropout(tmp_path):
    base = dict(model="mixer_paper", data="synthetic:256x1x16x16:4", batch_size=32, device="cpu", recipe="mixlab",
                model_kwargs={"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.5},
                overrides={"warmup_epochs": 0, "schedule": "constant"})
    train(TrainConfig(epochs=2, out=str(tmp_path / "a"), **base), log=None)
    train(TrainConfig(epochs=1, out=str(tmp_path / "b"), **base), log=None)
    train(TrainConfig(resume=str(tmp_path / "b"), epochs=2), log=None)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    torch_mask = dict(base, overrides={**base["overrides"], "fast_dropout": False})
    train(TrainConfig(epochs=2, out=str(tmp_path / "c"), **torch_mask), log=None)
    assert _rows(tmp_path / "c") != _rows(tmp_path / "a")
