"""A plain-PyTorch re-statement of the official DIANet CIFAR models (gbup-group/DIANet models/cifar/, commit
51685ca), written from reading dia_resnet.py, dia_preresnet.py, dia_wrn.py and dia_resnext.py (its init is
checked in test_dia_backbones.py; weights are copied here): their module names and their
order of operations, not mixlab's. tests/test_official_dianet.py copies mixlab's weights into these and
compares outputs in float64.

Two restatements that change nothing the tests can see:
- the final AvgPool2d(8) / avg_pool2d(out, 8) is the global mean: at 32 px the last map is 8×8; the tests use
  smaller images, where only the global mean is defined;
- the official LSTMCell applies Dropout(0.1) to its output only to feed a second layer; with one layer that
  result is never read, so `lstm_dropout` defaults to it but the training-mode test sets 0 (the discarded
  draw would only shift the random stream between the two sides).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class small_cell(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(input_size, input_size // 4), nn.ReLU(inplace=True),
                                 nn.Linear(input_size // 4, 4 * hidden_size))

    def forward(self, x):
        return self.seq(x)


class LSTMCell(nn.Module):
    """One layer: gates = w_ih(x) + w_hh(h); c' = σ(f)c + σ(i)tanh(g); h' = σ(o)σ(c')."""

    def __init__(self, size, dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.w_ih = nn.ModuleList([small_cell(size, size)])
        self.w_hh = nn.ModuleList([small_cell(size, size)])

    def forward(self, x, hidden):
        hx, cx = hidden[0][0], hidden[1][0]
        i, f, g, o = (self.w_ih[0](x) + self.w_hh[0](hx)).chunk(4, 1)
        cy = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
        hy = torch.sigmoid(o) * torch.sigmoid(cy)
        self.dropout(hy)                        # the next layer's input; there is none
        return hy[None], cy[None]


class Attention(nn.Module):
    """A stage: every block returns (branch, shortcut); x = branch ⊙ h_t + shortcut, then ReLU for the
    post-activation ResNet only. The LSTM state starts at zero at the first block."""

    def __init__(self, blocks, size, relu_after, lstm_dropout):
        super().__init__()
        self.ModuleList = blocks
        self.lstm = LSTMCell(size, lstm_dropout)
        self.relu_after = relu_after

    def forward(self, x):
        for idx, layer in enumerate(self.ModuleList):
            x, org = layer(x)
            seq = x.mean(dim=(2, 3))
            if idx == 0:
                ht = ct = x.new_zeros(1, seq.shape[0], seq.shape[1])
            ht, ct = self.lstm(seq, (ht, ct))
            x = x * ht[-1][:, :, None, None] + org
            if self.relu_after:
                x = F.relu(x)
        return x


class ResBottleneck(nn.Module):          # dia_resnet.py Bottleneck
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out, (x if self.downsample is None else self.downsample(x))


class PreBottleneck(nn.Module):          # dia_preresnet.py Bottleneck
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn_additional = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.bn_additional(self.conv3(F.relu(self.bn3(out))))
        return out, (x if self.downsample is None else self.downsample(x))   # shortcut on the raw input


class WideBasicBlock(nn.Module):         # dia_wrn.py BasicBlock
    def __init__(self, in_planes, out_planes, stride, dropRate):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)
        self.bn_additional = nn.BatchNorm2d(out_planes)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)   # after BN-ReLU, before conv2
        out = self.bn_additional(self.conv2(out))
        # the shortcut: x itself, or the 1×1 conv of the pre-activated x where the shape changes
        return out, (x if self.equalInOut else self.convShortcut(act))


class DIAResNet(nn.Module):
    """dia_resnet.ResNet (preact=False) or dia_preresnet.PreResNet (preact=True), bottleneck blocks."""

    def __init__(self, depth, num_classes, preact, lstm_dropout=0.1):
        super().__init__()
        n, block = (depth - 2) // 9, PreBottleneck if preact else ResBottleneck
        self.preact, self.inplanes = preact, 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = Attention(self._make_layer(block, 16, n, 1), 64, not preact, lstm_dropout)
        self.layer2 = Attention(self._make_layer(block, 32, n, 2), 128, not preact, lstm_dropout)
        self.layer3 = Attention(self._make_layer(block, 64, n, 2), 256, not preact, lstm_dropout)
        if preact:
            self.bn = nn.BatchNorm2d(256)
        self.fc = nn.Linear(256, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            layers = [nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False)]
            if not self.preact:
                layers.append(nn.BatchNorm2d(planes * 4))
            downsample = nn.Sequential(*layers)
        out = nn.ModuleList([block(self.inplanes, planes, stride, downsample)])
        self.inplanes = planes * 4
        out.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return out

    def forward(self, x):
        x = self.conv1(x)
        if not self.preact:
            x = F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.preact:
            x = F.relu(self.bn(x))
        return self.fc(x.mean(dim=(2, 3)))


class WideResNet(nn.Module):
    """dia_wrn.WideResNet(depth, num_classes, widen_factor, dropRate); its LSTM sizes are fixed at 64/128/256,
    so widen_factor is 4."""

    def __init__(self, depth, num_classes, widen_factor=4, dropRate=0.0, lstm_dropout=0.1):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = nn.ModuleList([WideBasicBlock(ch[i] if j == 0 else ch[i + 1], ch[i + 1],
                                                   stride if j == 0 else 1, dropRate) for j in range(n)])
            stages.append(Attention(blocks, (64, 128, 256)[i], False, lstm_dropout))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn1(out)).mean(dim=(2, 3)))


class ResNeXtBottleneck(nn.Module):      # dia_resnext.py, type C
    def __init__(self, in_channels, out_channels, stride, cardinality, widen_factor):
        super().__init__()
        D = cardinality * out_channels // widen_factor
        self.conv_reduce = nn.Conv2d(in_channels, D, 1, 1, 0, bias=False)
        self.bn_reduce = nn.BatchNorm2d(D)
        self.conv_conv = nn.Conv2d(D, D, 3, stride, 1, groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(D)
        self.conv_expand = nn.Conv2d(D, out_channels, 1, 1, 0, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:
            self.shortcut.add_module("shortcut_conv", nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False))
            self.shortcut.add_module("shortcut_bn", nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        return self.bn_expand(self.conv_expand(out)), self.shortcut(x)


class CifarResNeXt(nn.Module):
    """dia_resnext.CifarResNeXt(cardinality, depth, num_classes, widen_factor); LSTM sizes 128/256/512."""

    def __init__(self, cardinality, depth, num_classes, widen_factor=4, lstm_dropout=0.1):
        super().__init__()
        n = (depth - 2) // 9
        widths = [32, 32 * widen_factor, 64 * widen_factor, 128 * widen_factor]
        self.conv_1_3x3 = nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(32)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = nn.ModuleList([ResNeXtBottleneck(widths[i] if j == 0 else widths[i + 1], widths[i + 1],
                                                      stride if j == 0 else 1, cardinality, widen_factor)
                                    for j in range(n)])
            stages.append(Attention(blocks, widths[i + 1], True, lstm_dropout))
        self.stage_1, self.stage_2, self.stage_3 = stages
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn_1(self.conv_1_3x3(x)))
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        return self.classifier(x.mean(dim=(2, 3)))
