"""Exponential moving average of the weights: θ̄ ← d·θ̄ + (1 − d)·θ after every optimiser step, with the
warm-up d_t = min(d, (1 + t)/(10 + t)) so early averages are not dominated by the random initialisation
(as in timm / TF's ExponentialMovingAverage with num_updates). Buffers (BatchNorm statistics) are copied."""
import copy

import torch
from torch import nn


class ModelEma(nn.Module):
    def __init__(self, model, decay=0.999):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._param_names = {name for name, _ in self.module.named_parameters()}

    def decay_at(self, step):
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model, step):
        d = self.decay_at(step)
        shadow = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = shadow[name]
            if name in self._param_names:
                target.lerp_(value.to(target.dtype), 1.0 - d)
            else:
                target.copy_(value)
