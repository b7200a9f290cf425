"""`mixlab analyze`: the cross-layer Pearson correlation of channel attention (checked against numpy on
attention vectors recorded by an independent block loop) and the attention-parameter report."""
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mixlab
from mixlab.analyze import (attention_correlation, attention_params_row, attention_sites, pearson_per_image,
                            reaching_claim, record_attention)
from mixlab.checkpoint import save
from mixlab.cli import main

DATA = "synthetic:40x3x16x16:4"          # test split: 8 images of 3×16×16


def numpy_pearson_mean(vectors):
    """vectors [L, N, C] → mean over images of np.corrcoef over the channels, [L, L]."""
    return np.mean([np.corrcoef(vectors[:, n, :]) for n in range(vectors.shape[1])], axis=0)


def explicit_attention(model, x):
    """{stage: [L, N, C]} attention vectors from an explicit block loop, without hooks: the DIA cell's h_t, or
    the SE gate σ(W₂ ReLU(W₁ GAP(R) + b₁) + b₂) on each block's residual R."""
    out = {}
    if isinstance(model, mixlab.models.IsotropicNet):
        tokens, grid = model.patch_embed(x)
        tokens = tokens + model.pos_embed
        state, hs = None, []
        for block in model.blocks:
            delta = block.residual(tokens, grid)
            h, state = model.dia(delta.mean(dim=1), state)
            tokens = tokens + delta * h[:, None, :]
            hs.append(h)
        return {"blocks": torch.stack(hs).numpy()}
    x = model.stem(x) if model.preact else F.relu(model.stem_bn(model.stem(x)))
    for i, stage in enumerate(model.stages, 1):
        state, vectors = None, []
        for block in stage.blocks:
            se, block.se = block.se, None           # R before any per-block attention
            r, s = block.branches(x)
            block.se = se
            if stage.dia is not None:
                a, state = stage.dia(r.mean(dim=(2, 3)), state)
            else:
                w1, w2 = se.fc1.weight.flatten(1), se.fc2.weight.flatten(1)
                a = torch.sigmoid(F.linear(F.relu(F.linear(r.mean(dim=(2, 3)), w1, se.fc1.bias)), w2, se.fc2.bias))
            x = block.merge(r * a[:, :, None, None], s)
            vectors.append(a)
        out[f"stage{i}"] = torch.stack(vectors).numpy()
    return out


@pytest.mark.parametrize("name,overrides", [("se_resnet164", dict(depth=29)), ("dia_preresnet164", dict(depth=29)),
                                            ("dia_vit_paper", dict(depth=4, img_size=16))])
def test_correlation_matrix_equals_numpy_on_independently_recorded_attention(name, overrides):
    torch.manual_seed(0)
    model = mixlab.create_model(name, num_classes=4, **overrides).double().eval()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    result = attention_correlation(model, images, mean, std, batch_size=4)     # three batches: 4 + 4 + 2
    # the images as the model sees them: (x/255 − mean)/std in float32 (the normalisation of training), then
    # the model's float64
    x = ((images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).double()
    with torch.no_grad():
        reference = explicit_attention(model, x)
    assert set(result["stages"]) == set(reference) and result["images"] == 10
    for stage, vectors in reference.items():
        expected = numpy_pearson_mean(vectors)
        got = result["stages"][stage]
        np.testing.assert_allclose(np.array(got["matrix"]), expected, rtol=1e-10, atol=1e-10)
        off = expected[~np.eye(len(expected), dtype=bool)].mean()
        assert got["mean_off_diagonal"] == pytest.approx(off, abs=1e-10)
        assert (got["blocks"], got["channels"]) == vectors.shape[::2] and got["undefined"] == 0
    assert result["mean_off_diagonal"] == pytest.approx(
        np.mean([s["mean_off_diagonal"] for s in result["stages"].values()]))


def test_recording_does_not_change_the_output_and_leaves_no_hooks():
    torch.manual_seed(0)
    model = mixlab.create_model("dia_resnext101_8x32d", depth=20, num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
    records = record_attention(model, x)
    assert [tuple(v.shape) for v in records.values()] == [(2, 2, 128), (2, 2, 256), (2, 2, 512)]
    assert ((records["stage1"] > 0) & (records["stage1"] < 1)).all()
    assert not any(m._forward_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_pearson_of_constant_vectors_is_undefined_not_a_number_in_the_mean():
    a = torch.rand(3, 2, 5, dtype=torch.float64)
    a[1, 0] = 0.5                                   # block 2 of image 1 is flat over the channels
    rho = pearson_per_image(a)
    assert rho[0, 1].isnan().all() and rho[0, 0, 2].isfinite()
    np.testing.assert_allclose(rho[1].numpy(), np.corrcoef(a[:, 1].numpy()), atol=1e-12)


def test_models_without_channel_attention_are_refused():
    for name in ("resnet164", "vit_paper"):
        with pytest.raises(ValueError, match="no channel attention"):
            attention_sites(mixlab.create_model(name, **({"depth": 11} if name == "resnet164" else {})))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An SE run trained for one epoch by `mixlab train`, and saved DIA / DIA-ViT checkpoints (run layout)."""
    from mixlab.train import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    train(TrainConfig(model="se_resnet164", data=DATA, epochs=1, batch_size=20, out=str(root / "se"),
                      model_kwargs={"depth": 11}, device="cpu"))
    torch.manual_seed(0)
    for name, kwargs in (("dia_resnet164", dict(depth=11, img_size=16)), ("dia_vit_paper", dict(depth=3, img_size=16))):
        model = mixlab.create_model(name, num_classes=4, **kwargs)
        save(model, root / name, dataset=DATA, mean=[0.5] * 3, std=[0.25] * 3)
    return root


@pytest.mark.parametrize("run,stages", [("se", ["stage1", "stage2", "stage3"]),
                                        ("dia_resnet164", ["stage1", "stage2", "stage3"]),
                                        ("dia_vit_paper", ["blocks"])])
def test_cli_writes_matrix_csv_and_png_for_a_run(runs, tmp_path, capsys, run, stages):
    out = tmp_path / "corr"
    assert main(["analyze", "attention-correlation", "--run", str(runs / run), "--images", "6", "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "correlation.json").read_text())
    assert list(result["stages"]) == stages and result["images"] == 6
    for stage in stages:
        with open(out / f"correlation_{stage}.csv") as f:
            rows = list(csv.reader(f))
        blocks = result["stages"][stage]["blocks"]
        assert rows[0] == ["block"] + [str(i) for i in range(1, blocks + 1)] and len(rows) == blocks + 1
        np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], dtype=float),
                                   np.array(result["stages"][stage]["matrix"]), atol=1e-6)
        value = result["stages"][stage]["mean_off_diagonal"]   # null in JSON (NaN) when a stage has one block
        assert (f"{value:.4f}" if value is not None else "nan") in printed
    assert (out / "correlation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_untrained_baseline_and_bad_input(tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["analyze", "attention-correlation", "--model", "dia_wrn52_4", "--set", "depth=10", "--data", DATA,
                 "--images", "4", "--out", str(out)]) == 0
    result = json.loads((out / "correlation.json").read_text())
    assert [s["blocks"] for s in result["stages"].values()] == [1, 1, 1]     # 6n+4 = 10: one block a stage
    assert "untrained" in result["title"]
    assert main(["analyze", "attention-correlation", "--model", "se_resnet164", "--out", str(out)]) == 1
    assert "--data" in capsys.readouterr().err
    assert main(["analyze", "attention-correlation", "--model", "resnet164", "--set", "depth=11", "--data", DATA,
                 "--out", str(out)]) == 1
    assert "no channel attention" in capsys.readouterr().err


def test_attention_params_of_resnet164_and_the_944_percent():
    row = attention_params_row("ResNet", "resnet164", 164)
    # SE r=16 in all 54 blocks vs one DIA-LSTM r=4 per stage (test_dia.py derives 218,848)
    assert (row["se16_params"], row["dia4_params"], row["shared_se16_params"]) == (202_104, 218_848, 11_228)
    assert row["dia16_params"] == sum(2 * (c * c // 16 + c // 16 + 4 * c * c // 16 + 4 * c) for c in (64, 128, 256))
    assert row["saving_dia4_vs_se16"] == pytest.approx(100 * (1 - 218_848 / 202_104))     # DIA costs more here
    assert row["saving_shared_se16_vs_se16"] == pytest.approx(100 * 17 / 18)             # = 94.44 %
    assert reaching_claim([row]) == [("ResNet", 164, "one shared SE r=16 per stage", pytest.approx(94.444, abs=1e-3))]


def test_attention_params_report_files(tmp_path, monkeypatch, capsys):
    import mixlab.analyze.params as params
    monkeypatch.setattr(params, "BACKBONES", (("ResNet (bottleneck)", "resnet164", (20, 56)),
                                              ("WRN-d-4", "wrn52_4", (16,))))
    assert main(["analyze", "attention-params", "--out", str(tmp_path)]) == 0
    assert "reaching the journal's 94.4 %: none" in capsys.readouterr().out
    with open(tmp_path / "attention_params.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["backbone"], int(r["depth"]), int(r["se16_params"])) for r in rows] == [
        ("ResNet (bottleneck)", 20, 2 * 11_228), ("ResNet (bottleneck)", 56, 6 * 11_228), ("WRN-d-4", 16, 2 * 11_228)]
    assert "| ResNet (bottleneck) | 56 | 6 |" in (tmp_path / "attention_params.md").read_text()
    assert json.loads((tmp_path / "attention_params.json").read_text())["reaching_claim"] == []
    assert (tmp_path / "attention_params.png").read_bytes()[:4] == b"\x89PNG"
