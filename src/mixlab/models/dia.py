"""CIFAR ResNets with DIA, the Dense-and-Implicit Attention of DIANet (Huang et al., AAAI 2020, arXiv 1905.10671;
journal version "A Generic Shared Attention Mechanism for Various Backbone Neural Networks", arXiv 2210.16101).

Every block splits into a residual branch R_t and a shortcut S_t. With DIA, one `DIALSTMCell` per stage is
shared by all blocks of that stage, its state carried from block to block and reset to zero at the stage start:

    h_t, state_t = LSTM(GAP(R_t), state_{t−1});    x_t = merge(R_t ⊙ h_t, S_t)

merge is ReLU(R + S) for the post-activation bottleneck (ResNet-164, ResNeXt) and R + S for the pre-activation
blocks (PreResNet-164, WRN-52-4). The LSTM adds parameters per stage, not per block, so they do not grow with
depth. The baseline DIA argues against, SE (`se=True`), puts one squeeze-and-excitation module in every block,
at the same place: R_t ← R_t ⊙ σ(W₂ ReLU(W₁ GAP(R_t))).

- ResNet-164: stem conv3×3 3→16 + BN + ReLU; 3 stages × 18 bottlenecks (1×1 → 3×3 (stride) → 1×1, each
  BN, ReLU between), planes 16/32/64, expansion 4; conv1×1 + BN shortcut where the shape changes; GAP; FC.
- PreResNet-164 (bearpaw pytorch-classification preresnet.py, DIANet's baseline): stem conv3×3 3→16 (no BN);
  pre-activation bottlenecks BN-ReLU-conv1×1-BN-ReLU-conv3×3 (stride)-BN-ReLU-conv1×1; conv1×1 shortcut on the
  *raw* input where the shape changes; final BN-ReLU; GAP; FC. DIANet's dia_preresnet.py adds a BN at the end
  of every residual branch (`bn_additional`, here `branch_bn=True`), so DIA-PreResNet-164 is not PreResNet-164
  plus the LSTMs alone.
- ResNeXt-101 8×32d (gbup-group/DIANet dia_resnext.py, after prlz77/ResNeXt.pytorch): the ResNet bottleneck
  with a grouped 3×3 (cardinality 8) of width 8·planes, planes 32/64/128, stem conv3×3 3→32 + BN + ReLU, 11
  blocks a stage, outputs 128/256/512. DIANet's `--widen-factor 4` is the bottleneck expansion here.
- WRN-52-4 (gbup-group/DIANet dia_wrn.py, after xternalz/WideResNet-pytorch): stem conv3×3 3→16; 3 stages ×
  8 pre-activation blocks BN-ReLU-conv3×3-BN-ReLU-dropout-conv3×3, widths 64/128/256; conv1×1 shortcut on the
  pre-activated input where the shape changes; BN-ReLU; GAP; FC; every Linear bias zero at init. dia_wrn.py
  adds a BN after the second conv of every branch (`bn_additional`, here `branch_bn=True`).

Parameter counts at 100 classes (tests/test_dia_backbones.py), each against the figure it matches:
ResNet-164 1,727,284 and DIA-ResNet-164 1,946,132 (osmr/imgclsmob); PreResNet-164 1,726,388 (osmr; the same
as bearpaw's preresnet.py); DIA-PreResNet-164 1,961,364 (the official dia_preresnet.py) = osmr's 1,945,236 +
16,128 for the official `bn_additional` BNs, which osmr's DIA-PreResNet lacks; SE-ResNet-164 1,929,388 (osmr);
SE-PreResNet-164 1,928,492 = osmr's 1,928,012 + 480, because osmr's SE-PreResNet-CIFAR has a conv+BN+ReLU stem
(+32) and no final BN-ReLU (−512); DIA-ResNeXt-101 8×32d 33,006,020 (the official dia_resnext.py) and
ResNeXt-101 8×32d 32,138,244 (the same network without its three LSTMs); DIA-WRN-52-4 12,298,516 (the official
dia_wrn.py, WideResNet(52, 100, 4, 0.3)) and WRN-52-4 12,072,500 (the same network without its LSTMs and
branch BNs).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..layers.dia import DIALSTMCell
from ..layers.se import squeeze_excite
from ..layers.head import StagedApi, check_pool
from ..registry import register_model


def conv3x3(in_chans, out_chans, stride=1, groups=1):
    return nn.Conv2d(in_chans, out_chans, 3, stride, 1, groups=groups, bias=False)


def _squeeze_excite(channels, se_reduction):
    """One SE module for a block's residual branch, or None when the block has no per-block attention."""
    return squeeze_excite(channels, se_reduction) if se_reduction else None


class Bottleneck(nn.Module):
    """Post-activation bottleneck: R = BN(conv1×1(ReLU(BN(conv3×3(ReLU(BN(conv1×1(x)))))))), merge ReLU(R + S).

    cardinality > 1 makes it the ResNeXt bottleneck (type C): the 3×3 is a grouped conv of width
    cardinality·planes (8×32d: 8 groups of 32 in the first stage); cardinality 1 is the ResNet bottleneck.
    se_reduction: SE on R before the merge (SE-ResNet)."""

    expansion = 4

    def __init__(self, in_chans, planes, stride=1, cardinality=1, se_reduction=None):
        super().__init__()
        width, out_chans = cardinality * planes, planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups=cardinality)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.se = _squeeze_excite(out_chans, se_reduction)
        self.shortcut = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_chans))

    def branches(self, x):
        """(R, S): the residual branch after its last BN (and SE), before the addition, and the shortcut."""
        r = F.relu(self.bn1(self.conv1(x)))
        r = F.relu(self.bn2(self.conv2(r)))
        r = self.bn3(self.conv3(r))
        return (r if self.se is None else self.se(r)), self.shortcut(x)

    @staticmethod
    def merge(r, s):
        return F.relu(r + s)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (He et al., "Identity mappings", 2016; bearpaw preresnet.py):
    R = conv1×1(ReLU(BN(conv3×3(ReLU(BN(conv1×1(ReLU(BN(x))))))))), S = x, or conv1×1(x) on the raw input (not
    the pre-activated one) where the shape changes; merge R + S (no activation after the addition).

    branch_bn: a BN on R after the last conv, DIANet's `bn_additional` in dia_preresnet.py.
    se_reduction: SE on R before the merge (SE-PreResNet)."""

    expansion = 4

    def __init__(self, in_chans, planes, stride=1, branch_bn=False, se_reduction=None):
        super().__init__()
        out_chans = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_chans, 1, bias=False)
        self.branch_bn = nn.BatchNorm2d(out_chans) if branch_bn else nn.Identity()
        self.se = _squeeze_excite(out_chans, se_reduction)
        self.shortcut = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.shortcut = nn.Conv2d(in_chans, out_chans, 1, stride, bias=False)

    def branches(self, x):
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        r = self.branch_bn(self.conv3(F.relu(self.bn3(r))))
        return (r if self.se is None else self.se(r)), self.shortcut(x)

    @staticmethod
    def merge(r, s):
        return r + s


class PreActWideBlock(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis 2016, as DIANet's dia_wrn.py and the WRN code it
    follows): a = ReLU(BN(x)); R = conv3×3(drop(ReLU(BN(conv3×3(a))))); S = x or conv1×1(a) where the shape
    changes; merge R + S (no activation after the addition). The dropout sits after the ReLU, so no BN sees
    dropped-out activations (their statistics would differ between training and test).

    branch_bn: a BN on R after the second conv, DIANet's `bn_additional` in dia_wrn.py (the DIA-LSTM reads R
    after it). se_reduction: SE on R before the merge."""

    expansion = 1

    def __init__(self, in_chans, planes, stride=1, drop_rate=0.0, branch_bn=False, se_reduction=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.conv1 = conv3x3(in_chans, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop = nn.Dropout(drop_rate)
        self.conv2 = conv3x3(planes, planes)
        self.branch_bn = nn.BatchNorm2d(planes) if branch_bn else nn.Identity()
        self.se = _squeeze_excite(planes, se_reduction)
        self.shortcut = None
        if stride != 1 or in_chans != planes:
            self.shortcut = nn.Conv2d(in_chans, planes, 1, stride, bias=False)

    def branches(self, x):
        a = F.relu(self.bn1(x))
        r = self.branch_bn(self.conv2(self.drop(F.relu(self.bn2(self.conv1(a))))))
        return (r if self.se is None else self.se(r)), (x if self.shortcut is None else self.shortcut(a))

    @staticmethod
    def merge(r, s):
        return r + s


class DIAStage(nn.Module):
    """Blocks of one stage; with `dia`, one shared LSTM cell recalibrates every block's residual branch in a
    single pass, its (h, c) state carried from block to block and starting at zero."""

    __jit_unused_properties__ = ["stride"]

    def __init__(self, blocks, channels, dia=False, reduction=4):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.dia = DIALSTMCell(channels, reduction) if dia else None
        self.num_chs = channels

    @property
    def stride(self):
        """The stage's spatial stride: the largest conv stride in it (the first block's downsampling)."""
        return max((m.stride[0] for m in self.modules() if isinstance(m, nn.Conv2d)), default=1)

    def forward(self, x):
        state = None
        for block in self.blocks:
            r, s = block.branches(x)
            if self.dia is not None:
                attn, state = self.dia(r.mean(dim=(2, 3)), state)
                r = r * attn[:, :, None, None]
            x = block.merge(r, s)
        return x


class CifarResNet(StagedApi, nn.Module):
    """CIFAR ResNet (3 stages, stride 1/2/2) over one block type, optionally with DIA or SE attention.

    block: 'bottleneck' (ResNet-164; with cardinality > 1 ResNeXt), 'preact_bottleneck' (PreResNet-164) or
        'preact_wide' (WRN). depth: 9n+2 for the bottlenecks (164 → 18 blocks a stage, 101 → 11), 6n+4 for the
        wide block (52 → 8 blocks a stage).
    planes per stage: base_planes·widen_factor · (1, 2, 4); a bottleneck outputs 4× its planes.
    dia / dia_reduction: one DIA-LSTM per stage, shared by its blocks. se / se_reduction: one SE module in
        every block (the per-block baseline DIA argues against); the two are exclusive.
    cardinality: groups of the bottleneck's 3×3 (ResNeXt). branch_bn: the extra BN at the end of every
        pre-activation residual branch that DIANet's dia_preresnet.py and dia_wrn.py have. drop_rate: dropout
        between the wide block's convs (after the BN-ReLU).
    weight_init: 'resnet' (conv kaiming-normal fan-out, the rest PyTorch's defaults: bearpaw/DIANet resnet and
        preresnet), 'resnext' (as DIANet's dia_resnext.py: in addition the classifier kaiming-normal and every
        bias zero, the LSTM's included) or 'wrn' (as dia_wrn.py and WideResNet-pytorch: in addition every Linear
        bias zero, the classifier's and the LSTM's; Linear weights keep PyTorch's default).
    """

    BLOCKS = {"bottleneck": Bottleneck, "preact_bottleneck": PreActBottleneck, "preact_wide": PreActWideBlock}
    DEPTH_RULES = {"bottleneck": (9, 2), "preact_bottleneck": (9, 2), "preact_wide": (6, 4)}

    def __init__(self, block="bottleneck", depth=164, widen_factor=1, num_classes=100, in_chans=3, img_size=32,
                 dia=False, dia_reduction=4, se=False, se_reduction=16, drop_rate=0.0, cardinality=1,
                 branch_bn=False, base_planes=16, stem_chans=16, weight_init="resnet", global_pool="avg"):
        super().__init__()
        if block not in self.BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {sorted(self.BLOCKS)}")
        check_pool(global_pool)
        if weight_init not in ("resnet", "resnext", "wrn"):
            raise ValueError(f"weight_init must be 'resnet', 'resnext' or 'wrn', got {weight_init!r}")
        if dia and se:
            raise ValueError("dia=True and se=True are exclusive: DIA shares one attention module per stage, "
                             "SE puts one in every block; choose one")
        options = self._block_options(block, drop_rate, cardinality, branch_bn)
        options["se_reduction"] = se_reduction if se else None
        block_cls = self.BLOCKS[block]
        step, extra = self.DEPTH_RULES[block]
        per_stage = (depth - extra) // step
        if per_stage < 1 or depth != step * per_stage + extra:
            raise ValueError(f"depth {depth} does not fit the {block} ResNet; it must be {step}n+{extra} with n ≥ 1")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.global_pool = global_pool
        self.grad_checkpointing = False
        self.preact = block.startswith("preact")
        planes = [base_planes * widen_factor * 2 ** i for i in range(3)]
        self.stem = conv3x3(in_chans, stem_chans)
        self.stem_bn = nn.Identity() if self.preact else nn.BatchNorm2d(stem_chans)
        stages, prev = [], stem_chans
        for i, p in enumerate(planes):
            blocks = []
            for j in range(per_stage):
                blocks.append(block_cls(prev, p, 2 if (i > 0 and j == 0) else 1, **options))
                prev = p * block_cls.expansion
            stages.append(DIAStage(blocks, prev, dia, dia_reduction))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(prev) if self.preact else nn.Identity()
        self.num_features = self.head_hidden_size = prev
        self.head = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        for name, m in self.named_modules():
            # SE's 1×1 convs act as linear layers on pooled features: they keep PyTorch's default init;
            # meta tensors (timm's registration probe) hold no values to initialise
            if isinstance(m, nn.Conv2d) and ".se." not in name and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if weight_init == "resnext":
            if num_classes > 0:
                nn.init.kaiming_normal_(self.head.weight)
            for name, param in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(param)
        elif weight_init == "wrn":
            for m in self.modules():
                if isinstance(m, nn.Linear) and not m.bias.is_meta:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _block_options(block, drop_rate, cardinality, branch_bn):
        """The constructor options `block` understands; an option it would ignore is an error."""
        options = {}
        for value, default, owner, key in ((drop_rate, 0.0, "preact_wide", "drop_rate"),
                                           (cardinality, 1, "bottleneck", "cardinality"),
                                           (branch_bn, False, ("preact_bottleneck", "preact_wide"), "branch_bn")):
            owners = (owner,) if isinstance(owner, str) else owner
            if block in owners:
                options[key] = value
            elif value != default:
                raise ValueError(f"{key}={value!r} applies to the {' and '.join(map(repr, owners))} block only, "
                                 f"not {block!r}")
        return options

    # --- timm model API -------------------------------------------------------------------------------
    default_norm = "dianet"   # DIANet's cifar.py Normalize constants (mixlab.data.normalization)
    first_conv, classifier = "stem", "head"   # timm's pretrained-cfg keys (mixlab.timm_models)

    @classmethod
    def timm_cfg(cls, **_):
        """forward_features' stride, for timm's pretrained cfg without building: the stem keeps full resolution
        and stages 2 and 3 halve it (`feature_info` reads the same off a built net)."""
        return {"reduction": 4}
    __jit_unused_properties__ = ["feature_info"]

    @property
    def feature_info(self):
        """One entry per stage (`stages.i`): its width and stride, read off the stages (any block type); fixed at
        first use, so it keeps describing the full net after prune_intermediate_layers (as timm's models do)."""
        info = getattr(self, "_feature_info", None)
        if info is None:
            info, reduction = [], self.stem.stride[0]
            for i, stage in enumerate(self.stages):
                reduction *= stage.stride
                info.append(dict(num_chs=stage.num_chs, reduction=reduction, module=f"stages.{i}"))
            self._feature_info = info
        return info

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        """Parameter groups for layer-wise lr decay: stem, each stage (or block), the final norm."""
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.blocks\.(\d+)"
        return dict(stem=r"^stem", blocks=[(blocks, None), (r"^stages\.(\d+)\.dia", None), (r"^final_bn", (99999,))])

    final_norm_attr = "final_bn"

    def _stem(self, x):
        x = self.stem(x)
        return x if self.preact else F.relu(self.stem_bn(x))

    def _final_norm(self, x):
        """The pre-activation net's closing BN-ReLU (its "norm"); identity for the post-activation one (whose
        final_bn is an identity) and once pruned."""
        return x if isinstance(self.final_bn, nn.Identity) else F.relu(self.final_bn(x))


# Published figures (CIFAR top-1 %). top1_cifar100: the official DIANet README, mean of 5 runs.
# journal_top1_cifar100: quoted from the journal version (arXiv 2210.16101) by a summary of it, not checked
# against its table. osmr_*: osmr/imgclsmob gluon/README.md CIFAR tables (third-party, a different and longer
# recipe), 100 − error. params: this model's count at 100 classes (tests/test_dia_backbones.py) and its source.
OSMR = "osmr/imgclsmob (gluon/README.md and the *_cifar.py model files)"
OFFICIAL = "instantiating gbup-group/DIANet models/cifar/{} (commit 51685ca)"
PUBLISHED = {
    "resnet164": dict(top1_cifar100=73.43, osmr_top1_cifar100=79.56, osmr_top1_cifar10=96.32,
                      params=1727284, params_source=OSMR),
    "dia_resnet164": dict(top1_cifar100=76.67, journal_top1_cifar100=77.09, osmr_top1_cifar100=80.47,
                          osmr_top1_cifar10=96.50, params=1946132,
                          params_source=f"{OSMR}; also {OFFICIAL.format('dia_resnet.py')}"),
    "se_resnet164": dict(osmr_top1_cifar100=80.05, osmr_top1_cifar10=96.61, params=1929388, params_source=OSMR),
    "preresnet164": dict(top1_cifar100=76.53, osmr_top1_cifar100=79.82, osmr_top1_cifar10=96.36,
                         params=1726388, params_source=f"{OSMR}; also bearpaw/pytorch-classification preresnet.py"),
    "dia_preresnet164": dict(top1_cifar100=78.20, osmr_top1_cifar100=80.01, osmr_top1_cifar10=96.44,
                             params=1961364, params_source=f"{OFFICIAL.format('dia_preresnet.py')}; osmr's "
                             "1,945,236 lacks the official extra BN of every branch (16,128)"),
    "se_preresnet164": dict(osmr_top1_cifar100=79.95, osmr_top1_cifar10=96.27, params=1928492,
                            params_source="osmr's 1,928,012 + 480: osmr's SE-PreResNet-CIFAR has a BN in the stem "
                            "(+32) and no final BN (−512)"),
    "wrn52_4": dict(top1_cifar100=79.75, params=12072500,
                    params_source=f"{OFFICIAL.format('dia_wrn.py')} less its three LSTMs and branch BNs"),
    "dia_wrn52_4": dict(top1_cifar100=80.99, journal_top1_cifar100=81.02, params=12298516,
                        params_source=OFFICIAL.format("dia_wrn.py")),
    "resnext101_8x32d": dict(top1_cifar100=81.18, params=32138244,
                             params_source=f"{OFFICIAL.format('dia_resnext.py')} less its three LSTMs"),
    "dia_resnext101_8x32d": dict(top1_cifar100=82.46, journal_top1_cifar100=82.60, params=33006020,
                                 params_source=OFFICIAL.format("dia_resnext.py")),
}
RESNEXT = dict(block="bottleneck", depth=101, cardinality=8, base_planes=32, stem_chans=32, weight_init="resnext")
CONFIGS = {
    "resnet164": ("resnet", dict(block="bottleneck", depth=164), "ResNet-164 (bottleneck), DIANet's baseline"),
    "dia_resnet164": ("dia", dict(block="bottleneck", depth=164, dia=True),
                      "DIA-ResNet-164, gbup-group/DIANet models/cifar/dia_resnet.py (arXiv 1905.10671)"),
    "se_resnet164": ("resnet", dict(block="bottleneck", depth=164, se=True),
                     "SE-ResNet-164: SE (r=16) in every bottleneck (arXiv 1709.01507), the per-block baseline of "
                     "DIANet; osmr/imgclsmob seresnet164bn_cifar100"),
    "preresnet164": ("resnet", dict(block="preact_bottleneck", depth=164),
                     "PreResNet-164 (bottleneck), bearpaw/pytorch-classification preresnet.py, DIANet's baseline"),
    "dia_preresnet164": ("dia", dict(block="preact_bottleneck", depth=164, branch_bn=True, dia=True),
                         "DIA-PreResNet-164, gbup-group/DIANet models/cifar/dia_preresnet.py (arXiv 1905.10671)"),
    "se_preresnet164": ("resnet", dict(block="preact_bottleneck", depth=164, se=True),
                        "SE-PreResNet-164: SE (r=16) in every pre-activation bottleneck (arXiv 1709.01507)"),
    "wrn52_4": ("resnet", dict(block="preact_wide", depth=52, widen_factor=4, drop_rate=0.3, weight_init="wrn"),
                "WRN-52-4 (pre-activation wide ResNet, dropout 0.3; xternalz/WideResNet-pytorch as dia_wrn.py "
                "follows it), DIANet's baseline"),
    "dia_wrn52_4": ("dia", dict(block="preact_wide", depth=52, widen_factor=4, drop_rate=0.3, branch_bn=True,
                                dia=True, weight_init="wrn"),
                    "DIA-WRN-52-4, gbup-group/DIANet models/cifar/dia_wrn.py (arXiv 1905.10671)"),
    "resnext101_8x32d": ("resnet", RESNEXT,
                         "ResNeXt-101 8×32d (cardinality 8, widen factor 4): gbup-group/DIANet dia_resnext.py "
                         "without the DIA-LSTM, DIANet's baseline"),
    "dia_resnext101_8x32d": ("dia", {**RESNEXT, "dia": True}, "DIA-ResNeXt-101 8×32d, gbup-group/DIANet "
                             "models/cifar/dia_resnext.py (arXiv 1905.10671)"),
}


def _register(name, family, base, source):
    def build(num_classes=100, in_chans=3, img_size=32, **overrides):
        return CifarResNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **{**base, **overrides})

    build.__name__ = name
    register_model(name, model_class=CifarResNet, model_kwargs=base, family=family, paper=True, input_size=(3, 32, 32), num_classes=100, source=source,
                   published=PUBLISHED[name])(build)


for _name, (_family, _base, _source) in CONFIGS.items():
    _register(_name, _family, _base, _source)
