"""`mixlab demo`: five mixers on one equal skeleton, and a comparison a person can read.

The full demo (all 60,000 images, 4 epochs, ≤ 3 min on 2 cores, best ≥ 85 %) is measured in
docs/BENCHMARKS.md; here a 600-image, 1-epoch run checks everything the demo prints and writes.
"""
import json

import pytest
import torch

from mixlab.cli import main
from mixlab.registry import create_model, model_cfg
from mixlab.train.demo import CPU_PLAN, MIXER_NAMES
from conftest import dataset_folder, needs_dataset

FASHION = dataset_folder("fashion-mnist")       # None: the real-data test below skips

# Counted by hand from the shared skeleton: patch embedding 7·7·64 + 64, position embedding 16·64 (ViT only),
# per block two LayerNorms 2·128 and the channel MLP 64·128 + 128 + 128·64 + 64 = 16,576, final norm 128, head
# 64·10 + 10. Only the mixer differs.
SKELETON = (49 * 64 + 64) + 2 * (2 * 128 + 16_576) + 128 + (64 * 10 + 10)
MIXER_PARAMS = {
    "vit_demo": 16 * 64 + 2 * (64 * 192 + 192 + 64 * 64 + 64),                  # pos embed; qkv + proj
    "mixer_demo": 2 * (16 * 64 + 64 + 64 * 16 + 16),                          # token MLP 16 → 64 → 16
    "ninformer_demo": 2 * ((64 * 64 + 64) + 2 * 128 + (16 * 64 + 64 + 64 * 16 + 16)
                            + (64 * 64 + 64 + 64 * 64 + 64)),                 # projection; inner Mixer block
    "activator_demo": 2 * (2 * (64 * 128 + 128) + 2 * 128 + 128 * 64 + 64),   # W1, W2, shared LN(128), W3
    "aff_demo": 2 * (2 * 4 * (16 * 16 + 16 + 16 * 16 + 16)),                  # complex grouped MLP, 4 groups
}


def test_demo_configs_share_one_skeleton_and_differ_only_in_the_mixer():
    assert set(CPU_PLAN.models) == set(MIXER_PARAMS)
    mixers = set()
    for name in CPU_PLAN.models:
        model = create_model(name, num_classes=10, in_chans=1, img_size=28)
        assert model.patch_embed.grid_size == (4, 4) and model.embed_dim == 64 and len(model.blocks) == 2
        assert sum(p.numel() for p in model.parameters()) == SKELETON + MIXER_PARAMS[name], name
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        mixers.add(type(model.blocks[0].token_mixer).__name__)
        assert model_cfg(name)["family"] in MIXER_NAMES
    assert len(mixers) == 5


@needs_dataset("fashion-mnist")
def test_demo_prints_a_table_and_writes_the_plot_and_run_directories(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--subset", "600", "--epochs", "1", "--out", str(out), "--data-dir", str(FASHION),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # what it did, in words: data and where from, models, recipe, length, where things are, the next step
    assert str(FASHION) in text and "600-image subsets of the training and test sets" in text
    assert "test top-1 on 600 Fashion-MNIST test images" in text
    assert "recipe 'demo'" in text and "1 epochs" in text
    assert f"comparison plot: {out / 'comparison.png'}" in text and "go further: mixlab reproduce" in text
    table = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in table["rows"]] == list(CPU_PLAN.models)
    for row in table["rows"]:
        assert row["params"] == SKELETON + MIXER_PARAMS[row["model"]]
        assert row["gflops"] > 0 and row["train_images_per_s"] > 0 and 0 <= row["test_top1"] <= 100
        line = next(l for l in text.splitlines() if l.startswith(row["model"] + " "))
        assert MIXER_NAMES[model_cfg(row["model"])["family"]] in line and f"{row['params']:,}" in line
        assert f"{row['test_top1']:.2f}%" in line
        summary = json.loads((out / row["model"] / "summary.json").read_text())
        assert summary["completed"] and row["test_images"] == summary["test_images"] == 600
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
