"""The hierarchical MetaFormer (`metaformer_*`) and the `speed` recipe's evaluation and memory-layout keys."""
import json

import pytest
import torch
import torch.nn.functional as F

import mixlab
from mixlab.data import load_dataset
from mixlab.train import TrainConfig, evaluate, load_recipe, train


def block_params(d, r=2):
    """BN₁ 2d, dwconv 9d + d, the mixer's BN 2d, BN₂ 2d, fc1 d·rd + rd, fc2 rd·d + d."""
    return 2 * d + 10 * d + 2 * d + 2 * d + (d * r * d + r * d) + (r * d * d + d)


def test_metaformer_speed_parameter_count_by_hand():
    stem = 3 * 48 * 9 + 48 + 2 * 48
    blocks = block_params(48) + 2 * block_params(96) + 2 * block_params(192)
    downsample = (2 * 48 + 48 * 96 * 4 + 96) + (2 * 96 + 96 * 192 * 4 + 192)
    head = 2 * 192 + 192 * 10 + 10
    model = mixlab.create_model("metaformer_speed")
    assert sum(p.numel() for p in model.parameters()) == stem + blocks + downsample + head == 486_202


def reference_forward(sd, x, training, depths=(1, 2, 2)):
    """The network's equations written out with torch.nn.functional over its state dict (names only): an
    independent statement of stem → stages (BN → 2×2/2 conv between them) → blocks → BN → mean → linear."""
    def bn(prefix, h):
        return F.batch_norm(h, sd[prefix + ".running_mean"].clone(), sd[prefix + ".running_var"].clone(),
                            sd[prefix + ".weight"], sd[prefix + ".bias"], training=training, momentum=0.1, eps=1e-5)

    h = F.gelu(bn("stem.1", F.conv2d(x, sd["stem.0.weight"], sd["stem.0.bias"], padding=1)))
    for s, depth in enumerate(depths):
        if s:
            h = F.conv2d(bn(f"stages.{s}.downsample.0", h), sd[f"stages.{s}.downsample.1.weight"],
                         sd[f"stages.{s}.downsample.1.bias"], stride=2)
        for b in range(depth):
            p = f"stages.{s}.blocks.{b}"
            dw = F.conv2d(bn(p + ".norm1", h), sd[p + ".token_mixer.conv.weight"], sd[p + ".token_mixer.conv.bias"],
                          padding=1, groups=h.shape[1])
            h = h + bn(p + ".token_mixer.norm", F.gelu(dw))          # ConvMixer's mixer: BN(GELU(DWConv(x)))
            m = F.conv2d(F.gelu(F.conv2d(bn(p + ".norm2", h), sd[p + ".fc1.weight"], sd[p + ".fc1.bias"])),
                         sd[p + ".fc2.weight"], sd[p + ".fc2.bias"])
            h = h + m
    return F.linear(bn("norm", h).mean((2, 3)), sd["head.weight"], sd["head.bias"])


@pytest.mark.parametrize("training", [False, True])
def test_metaformer_speed_equals_its_equations_in_float64(training):
    torch.manual_seed(0)
    model = mixlab.create_model("metaformer_speed").double()
    for m in model.modules():   # non-trivial norm statistics and affine parameters, so BN is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.1), m.bias.data.normal_(0, 0.1)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    model.train(training)
    torch.testing.assert_close(model(x), reference_forward(sd, x, training), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixer", ["pooling", "attention", "token_mlp", "identity"])
def test_any_mixer_plugs_into_the_pyramid(mixer):
    model = mixlab.create_model("metaformer_speed", mixer=mixer)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4]
    feats = model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(48, 32, 32), (96, 16, 16), (192, 8, 8)]


def test_bad_stage_lists_are_one_line_errors():
    with pytest.raises(ValueError, match="one positive entry per stage"):
        mixlab.create_model("metaformer_speed", widths=(48, 96), depths=(1, 2, 2))
    with pytest.raises(ValueError, match="does not halve"):
        mixlab.create_model("metaformer_speed", img_size=30)


def test_flip_tta_scores_the_mean_of_an_image_and_its_mirror():
    ds = load_dataset("synthetic:48x3x16x16:4", split="test")
    torch.manual_seed(0)
    model = mixlab.create_model("metaformer_speed", num_classes=4, img_size=16).eval()
    mean, std = list(ds.mean), list(ds.std)
    got = evaluate(model, ds, "cpu", mean, std, batch_size=20, flip_tta=True)
    x = (ds.images.float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = 0.5 * (model(x) + model(x.flip(3)))
    assert got["top1"] == pytest.approx(100.0 * (logits.argmax(1) == ds.labels).float().mean().item())
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, ds.labels).item(), rel=1e-5)
    plain = evaluate(model, ds, "cpu", mean, std, batch_size=20)
    assert plain["loss"] != pytest.approx(got["loss"])   # the flag changes what is scored


def test_speed_recipe_trains_in_channels_last_resumes_bit_exactly_and_eval_matches(tmp_path, monkeypatch, capsys):
    """channels-last weights and flip TTA on: 2 epochs at once = a run stopped after its first commit and resumed,
    bit for bit; `mixlab eval` scores the saved weights with the TTA the run recorded."""
    from safetensors.torch import load_file
    from mixlab.train import engine
    recipe = load_recipe("speed")
    assert (recipe.eval_flip, recipe.channels_last, recipe.precision, recipe.label_smoothing) == (True, True, "bf16", 0.2)
    assert not load_recipe("mixlab").eval_flip and not load_recipe("strong").channels_last   # off elsewhere
    kw = dict(model="metaformer_speed", data="synthetic:96x3x16x16:4", recipe="speed", batch_size=32, device="cpu",
              seed=1, epochs=2, overrides={"precision": "fp32"})
    straight = train(TrainConfig(**kw, out=str(tmp_path / "straight")), log=None)
    commit = engine.commit_epoch

    def stop_after_first(run, row):
        assert next(run.model.parameters()).is_contiguous(memory_format=torch.channels_last)
        commit(run, row)
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "commit_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**kw, out=str(tmp_path / "split")), log=None)
    monkeypatch.setattr(engine, "commit_epoch", commit)
    resumed = train(TrainConfig(resume=str(tmp_path / "split"), device="cpu"), log=None)
    assert (resumed["test_top1"], resumed["test_loss"]) == (straight["test_top1"], straight["test_loss"])
    wa, wb = load_file(str(tmp_path / "straight" / "last.safetensors")), load_file(str(tmp_path / "split" / "last.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["recipe"]["channels_last"] and config["recipe"]["eval_flip"]
    from mixlab.train import evaluate_run
    again = evaluate_run(str(tmp_path / "straight"), weights="last")
    assert again["top1"] == pytest.approx(straight["test_top1"], abs=1e-9)
    assert again["loss"] == pytest.approx(straight["test_loss"], rel=1e-6)
