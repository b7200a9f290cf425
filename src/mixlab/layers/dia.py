import torch
from torch import nn


def _bottleneck(channels, reduction):
    return nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                         nn.Linear(channels // reduction, 4 * channels))


class DIALSTMCell(nn.Module):
    """The shared attention module of DIANet (Huang et al., AAAI 2020, arXiv 1905.10671).

    One cell serves every block of a stage; block t feeds the global-average-pooled residual x_t:
        [i, f, g, o] = φ_x(x_t) + φ_h(h_{t−1}),  φ = Linear(C→C/r) → ReLU → Linear(C/r→4C)
        c_t = σ(f)⊙c_{t−1} + σ(i)⊙tanh(g),   h_t = σ(o) ⊙ σ(c_t)
    h_t ∈ (0, 1)^C recalibrates the block's residual channels (where SE would sit). The sigmoid on c_t (in
    place of LSTM's tanh) is DIANet's; (h₀, c₀) = 0 at the first block of a stage.
    """

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.channels = channels
        self.input_map = _bottleneck(channels, reduction)
        self.hidden_map = _bottleneck(channels, reduction)

    def forward(self, x, state=None):
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.channels)
            state = (zeros, zeros)
        h, c = state
        i, f, g, o = (self.input_map(x) + self.hidden_map(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.sigmoid(c)
        return h, (h, c)
