"""`mixlab demo`: five mixers on one equal skeleton, as the smallest protocol of `mixlab compare`.

The full demo (all 60,000 images, 3 epochs, ≤ 3 min on 2 cores) is measured in docs/BENCHMARKS.md; here a
600-image, 1-epoch run checks everything the demo prints and writes.
"""
import json

import pytest
import torch

from mixlab.cli import main
from mixlab.compare import plan as P
from mixlab.compare.demo import CPU_PROTOCOL, MIXERS, demo_config
from mixlab.registry import create_model
from conftest import dataset_folder, needs_dataset

FASHION = dataset_folder("fashion-mnist")       # None: the real-data test below skips
DEMO_CONFIGS = dict(zip(MIXERS, ("vit_demo", "mixer_demo", "ninformer_demo", "activator_demo", "aff_demo")))

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


def test_the_demo_is_compares_demo_skeleton_and_builds_exactly_the_demo_configs():
    cc, protocol = demo_config("unused", "cpu")
    assert protocol == CPU_PROTOCOL and cc.skeleton == "demo" and cc.mixers == list(MIXERS)
    assert (cc.budget, cc.recipe, cc.batch_size, cc.seeds, cc.data) == ("3epochs", "demo", 128, 1, "fashion-mnist")
    mixers = set()
    for mixer, name in DEMO_CONFIGS.items():
        torch.manual_seed(0)
        built = create_model(P.BASE_MODEL, num_classes=10, in_chans=1, img_size=28,
                             **P.model_kwargs(mixer, P.skeleton_args("demo")))
        named = create_model(name, num_classes=10, in_chans=1, img_size=28)
        assert built.patch_embed.grid_size == (4, 4) and built.embed_dim == 64 and len(built.blocks) == 2
        assert sum(p.numel() for p in built.parameters()) == SKELETON + MIXER_PARAMS[name], name
        # the registered *_demo config is the same network: same parameters, same shapes, same output
        assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in named.state_dict().items()}
        named.load_state_dict(built.state_dict())
        x = torch.randn(2, 1, 28, 28)
        torch.testing.assert_close(built.eval()(x), named.eval()(x))
        mixers.add(type(built.blocks[0].token_mixer).__name__)
    assert len(mixers) == 5


@needs_dataset("fashion-mnist")
def test_demo_prints_a_compare_table_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--subset", "600", "--epochs", "1", "--out", str(out), "--data-dir", str(FASHION),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # what it did, in words: data and where from, mixers, recipe, length, where things are, the next step
    assert str(FASHION) in text and "600-image subsets of the training and test sets" in text
    assert "test top-1 on 600 Fashion-MNIST test images" in text
    assert "recipe 'demo'" in text and "1 epochs" in text and "compare's 'demo' skeleton" in text
    assert f"{out}/compare.md" in text and "go further: mixlab compare" in text
    table = json.loads((out / "compare.json").read_text())
    assert [r["mixer"] for r in table["rows"]] == list(MIXERS)
    for row in table["rows"]:
        assert row["params"] == SKELETON + MIXER_PARAMS[DEMO_CONFIGS[row["mixer"]]]
        assert row["gflops"] > 0 and row["train_images_per_s"] > 0 and 0 <= row["top1_mean"] <= 100
        line = next(l for l in text.splitlines() if l.startswith(row["mixer"] + " "))
        assert f"{row['params']:,}" in line and f"{row['top1_mean']:.2f}" in line
        summary = json.loads((out / "runs" / row["mixer"] / "seed-0" / "summary.json").read_text())
        assert summary["completed"] and summary["test_images"] == 600 and summary["test_top1"] == row["top1_mean"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
