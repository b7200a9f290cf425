import torch.nn.functional as F
from torch import nn

from ..layers.contract import image_to_tokens, tokens_to_image


class IdentityMixer(nn.Module):
    """No token mixing (IdentityFormer, Yu et al. 2022): out = X. The ablation floor for any mixer. It mixes no
    tokens, so a class token would never see the image: refused."""

    fixed_tokens, needs_grid, supports_class_token = False, False, False
    drop_options = ()

    def __init__(self, dim=None, num_tokens=None, grid=None):
        super().__init__()

    def forward(self, x, grid=None):
        return x


class PoolingMixer(nn.Module):
    """PoolFormer token mixer (Yu et al. 2022): out = AvgPool_k(X) − X on the (H, W) token grid.

    Subtracting X cancels the block's residual so the mixer adds only the neighbourhood information. It works
    on the patch grid, which a class token is not part of: refused.
    """

    fixed_tokens, needs_grid, supports_class_token = False, True, False
    drop_options = ()

    def __init__(self, dim=None, num_tokens=None, grid=None, pool_size=3):
        super().__init__()
        self.grid = tuple(grid) if grid is not None else None
        self.pool_size = pool_size

    def forward(self, x, grid=None):
        img = tokens_to_image(x, self.grid if grid is None else grid)
        pooled = F.avg_pool2d(img, self.pool_size, 1, self.pool_size // 2, count_include_pad=False)
        return image_to_tokens(pooled - img)
