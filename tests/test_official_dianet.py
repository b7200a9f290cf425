"""DIA backbones against the official DIANet code (issue 20): tests/official_dianet.py re-states
gbup-group/DIANet's dia_resnet.py, dia_preresnet.py, dia_wrn.py and dia_resnext.py in their own names; mixlab's weights and BN
statistics are copied across by an explicit name map and the two agree in float64, in eval mode and in
training mode (batch statistics, and the WRN's dropout drawing the same masks under one seed). Reduced depth,
the same block code: 2 blocks a stage, so the LSTM state is carried from block to block."""
import re

import pytest
import torch
from torch import nn

import mixlab
from official_dianet import CifarResNeXt, DIAResNet, WideResNet
from test_dia import randomize_bn

CASES = {   # mixlab name: (depth, reference builder)
    "dia_resnet164": (20, lambda: DIAResNet(20, 5, preact=False, lstm_dropout=0.0)),
    "dia_preresnet164": (20, lambda: DIAResNet(20, 5, preact=True, lstm_dropout=0.0)),
    "dia_wrn52_4": (16, lambda: WideResNet(16, 5, 4, 0.3, lstm_dropout=0.0)),
    "dia_resnext101_8x32d": (20, lambda: CifarResNeXt(8, 20, 5, 4, lstm_dropout=0.0)),
}
BLOCK_NAMES = {"downsample.0": "shortcut.0", "downsample.1": "shortcut.1", "bn_additional": "branch_bn",
               "convShortcut": "shortcut", "conv_reduce": "conv1", "bn_reduce": "bn1", "conv_conv": "conv2",
               "conv_expand": "conv3", "bn_expand": "bn3", "shortcut.shortcut_conv": "shortcut.0",
               "shortcut.shortcut_bn": "shortcut.1"}
TOP = {"conv1": "stem", "bn1": "stem_bn", "bn": "final_bn", "fc": "head", "conv_1_3x3": "stem", "bn_1": "stem_bn",
       "classifier": "head"}
RESNEXT_BLOCK = {"bn": "bn2"}      # the ResNeXt block's middle BN is called `bn`


def ours_name(official, name):
    """The mixlab name of an official parameter or buffer."""
    m = re.match(r"(?:layer|block|stage_)(\d)\.(ModuleList\.(\d+)\.(.+)|lstm\.w_(ih|hh)\.0\.seq\.(\d)\.(\w+))$", official)
    if m is None:
        module, leaf = official.rsplit(".", 1)
        top = dict(TOP, bn1="final_bn") if name == "dia_wrn52_4" else TOP
        return f"{top[module]}.{leaf}"
    stage = int(m.group(1)) - 1
    if m.group(2).startswith("lstm"):
        return f"stages.{stage}.dia.{'input' if m.group(5) == 'ih' else 'hidden'}_map.{m.group(6)}.{m.group(7)}"
    module, leaf = m.group(4).rsplit(".", 1)
    module = BLOCK_NAMES.get(module, module)
    if name == "dia_resnext101_8x32d":
        module = RESNEXT_BLOCK.get(module, module)
    if name == "dia_preresnet164" and module == "shortcut.0":
        module = "shortcut"                       # mixlab's pre-activation shortcut is the bare conv
    return f"stages.{stage}.blocks.{m.group(3)}.{module}.{leaf}"


def build_pair(name, seed=0):
    depth, make_ref = CASES[name]
    torch.manual_seed(seed)
    ours = randomize_bn(mixlab.create_model(name, depth=depth, num_classes=5)).double()
    ref = make_ref().double()
    mine = {**dict(ours.named_parameters()), **dict(ours.named_buffers())}
    theirs = {**dict(ref.named_parameters()), **dict(ref.named_buffers())}
    assert len(mine) == len(theirs)
    with torch.no_grad():
        for official, t in theirs.items():
            t.copy_(mine.pop(ours_name(official, name)))
    assert not mine                               # every tensor of ours has its official counterpart
    return ref, ours


def images(n=4, size=16, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", CASES)
def test_eval_and_training_mode_equal_the_official_code_in_float64(name):
    ref, ours = build_pair(name)
    x = images()
    ref.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    ref.train(), ours.train()
    torch.manual_seed(7)
    y_ours = ours(x)
    torch.manual_seed(7)
    y_ref = ref(x)
    torch.testing.assert_close(y_ours, y_ref, rtol=0, atol=1e-12)
    y_ours.square().sum().backward()
    y_ref.square().sum().backward()
    grads = {ours_name(n, name): p.grad for n, p in ref.named_parameters()}
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=0, atol=1e-10, msg=n)


def test_official_counts_and_init():
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in mixlab.create_model(n, num_classes=100).parameters())
                  for n in ("dia_wrn52_4", "wrn52_4")}
    # WideResNet(52, 100, 4, 0.3) of dia_wrn.py; the plain WRN lacks the three LSTMs and 8·2·(64+128+256) BN
    assert counts == {"dia_wrn52_4": 12_298_516, "wrn52_4": 12_298_516 - 218_848 - 7_168}
    assert sum(p.numel() for p in WideResNet(52, 100, 4, 0.3).parameters()) == 12_298_516
    for n in counts:
        assert mixlab.model_cfg(n)["published"]["params"] == counts[n]
    model = mixlab.create_model("dia_wrn52_4", depth=16)
    linear_biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linear_biases) == 1 + 3 * 4 and all(torch.count_nonzero(b) == 0 for b in linear_biases)
