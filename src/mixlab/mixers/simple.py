import torch
import torch.nn.functional as F
from torch import nn

from ..layers.contract import check_token_count, image_to_tokens, tokens_to_image

torch.fx.wrap("check_token_count")


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


class RandomMixer(nn.Module):
    """RandFormer's token mixer (Yu et al. 2022, "MetaFormer Baselines for Vision", arXiv 2210.13452):
    out = softmax(U) · X with U ~ Uniform[0, 1)^{N×N} drawn once at construction and frozen.

    A mixing matrix that is never learned: the floor that says how much of a mixer's accuracy comes from
    mixing tokens at all rather than from what it learns about them. Held as a buffer (saved with the weights,
    never optimised, not counted as a parameter), drawn from torch's global RNG, so the run's seed fixes it.
    Its size is the token count: the image size is fixed and a class token is refused (as in the paper, which
    mixes the patch tokens only).
    """

    fixed_tokens, needs_grid, supports_class_token = True, False, False
    drop_options = ()

    def __init__(self, dim=None, num_tokens=None, grid=None):
        super().__init__()
        if not num_tokens:
            raise ValueError("the random mixer needs num_tokens (its N×N matrix is fixed at construction)")
        self.num_tokens = int(num_tokens)
        self.grid = tuple(grid) if grid is not None else (self.num_tokens, 1)
        self.register_buffer("mixing", torch.softmax(torch.rand(self.num_tokens, self.num_tokens), dim=-1))

    def forward(self, x, grid=None):
        x = check_token_count(x, self.num_tokens, self.grid, "the random mixer")
        return torch.einsum("mn,bnc->bmc", self.mixing.to(x.dtype), x)


class DepthwiseConvMixer(nn.Module):
    """ConvMixer's token mixer (Trockman & Kolter 2022, "Patches Are All You Need?", arXiv 2201.09792):
    out = BN(GELU(DWConv_k(X))) on the (H, W) token grid, a per-channel k×k convolution (with bias).

    ConvMixer adds this branch to its input (x + BN(σ(DWConv(x)))); the isotropic block supplies that residual
    and a LayerNorm before it. k = 3 by default, the neighbourhood PoolFormer averages over, so `pooling` and
    `dwconv` differ only in whether the 3×3 weights are fixed or learned. It works on the patch grid, which a
    class token is not part of: refused.
    """

    fixed_tokens, needs_grid, supports_class_token = False, True, False
    drop_options = ()

    def __init__(self, dim, num_tokens=None, grid=None, kernel_size=3):
        super().__init__()
        self.grid = tuple(grid) if grid is not None else None
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.act = nn.GELU()
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x, grid=None):
        img = tokens_to_image(x, self.grid if grid is None else grid)
        return image_to_tokens(self.norm(self.act(self.conv(img))))
