import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2020).

    [Q, K, V] = X W_qkv;  head_i = softmax(Q_i K_iᵀ / √d_h) V_i;  out = concat(head_1..h) W_o.
    Computed with `F.scaled_dot_product_attention` (flash / memory-efficient kernels where available).
    Cost O(N²·d) in the number of tokens N; any token count, class tokens included.
    """

    fixed_tokens, needs_grid, supports_class_token = False, False, True
    drop_options = ("proj_drop",)

    def __init__(self, dim, num_tokens=None, grid=None, num_heads=8, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, grid=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))
