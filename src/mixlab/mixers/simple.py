import torch.nn.functional as F
from torch import nn


class IdentityMixer(nn.Module):
    """No token mixing (IdentityFormer, Yu et al. 2022): out = X. The ablation floor for any mixer."""

    def __init__(self, dim=None, num_tokens=None, grid=None, **_):
        super().__init__()

    def forward(self, x, grid=None):
        return x


class PoolingMixer(nn.Module):
    """PoolFormer token mixer (Yu et al. 2022): out = AvgPool_k(X) − X on the (H, W) token grid.

    Subtracting X cancels the block's residual so the mixer adds only the neighbourhood information.
    """

    def __init__(self, dim=None, num_tokens=None, grid=None, pool_size=3, **_):
        super().__init__()
        self.grid = tuple(grid) if grid is not None else None
        self.pool_size = pool_size

    def forward(self, x, grid=None):
        b, n, c = x.shape
        h, w = grid or self.grid
        img = x.transpose(1, 2).reshape(b, c, h, w)
        pooled = F.avg_pool2d(img, self.pool_size, 1, self.pool_size // 2, count_include_pad=False)
        return (pooled - img).flatten(2).transpose(1, 2)
