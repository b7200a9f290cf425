"""One isotropic backbone for ViT, MLP-Mixer, Local-ViT, NiNformer, Activator and AFF-on-tokens.

patch embedding → L × MetaFormerBlock(token mixer, channel MLP) [→ DIA recalibration] → norm → pool → head.
The papers differ only in the token mixer (and Local-ViT in the channel MLP), so each is a named config.
"""

import torch
from torch import nn
from timm.layers import trunc_normal_

from ..layers import MetaFormerBlock, PatchEmbed, create_channel_mlp
from ..layers.dia import DIALSTMCell
from ..mixers import FIXED_TOKEN_MIXERS, create_mixer


class IsotropicNet(nn.Module):
    """MetaFormer-style isotropic classifier with a pluggable token mixer and channel MLP (timm model API).

    Args:
        mixer / mixer_kwargs: token mixer name ('attention', 'token_mlp', 'nin_gating', 'glu_gating', 'aff',
            'identity', 'pooling') and its options.
        mlp / mlp_hidden_dim: channel MLP ('mlp', 'conv_mlp' = Local-ViT, None = no second sub-layer).
        share_norm: one LayerNorm for both sub-layers of a block (official NiNformer/Activator code).
        pos_embed: 'learn' (learned absolute, as ViT) or 'none'.
        class_token / global_pool: 'token' pooling needs the class token; 'avg' is mean over patch tokens.
        final_norm: LayerNorm on the tokens before pooling (ViT), absent in the NiNformer/Activator code.
        drop_rate: dropout inside the mixers and MLPs (0.5 in the paper configs); pos_drop_rate: dropout on
            the embedded tokens (0 in every official code).
        dia: share one DIA-LSTM across all blocks; each block's update Δ becomes Δ ⊙ h_t (DIANet on a
            transformer, arXiv 2210.16101).
        weight_init: 'torch' (PyTorch defaults, as the official code of the papers) or 'trunc_normal' (timm ViT).
    """

    def __init__(self, img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=256, depth=4,
                 mixer="attention", mixer_kwargs=None, mlp="mlp", mlp_hidden_dim=512, mlp_kwargs=None,
                 share_norm=False, pos_embed="none", class_token=False, global_pool="avg", final_norm=False,
                 drop_rate=0.0, pos_drop_rate=0.0, drop_path_rate=0.0, dia=False, dia_reduction=4, weight_init="torch",
                 model_name=None):
        super().__init__()
        if global_pool not in ("avg", "token", ""):
            raise ValueError(f"global_pool must be 'avg', 'token' or '', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        fixed_tokens = mixer in FIXED_TOKEN_MIXERS or getattr(mixer, "fixed_tokens", False)
        if class_token and (fixed_tokens or mixer in ("aff", "pooling")):
            raise ValueError(f"mixer {mixer!r} works on the patch grid and cannot take a class token")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.mixer_name = mixer
        self.grad_checkpointing = False
        dynamic = not fixed_tokens and pos_embed == "none"
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, dynamic_img_size=dynamic,
                                      model_name=model_name)
        grid, n = self.patch_embed.grid_size, self.patch_embed.num_patches
        self.num_prefix_tokens = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        if pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.randn(1, n + self.num_prefix_tokens, embed_dim) * 0.02)
        elif pos_embed == "none":
            self.pos_embed = None
        else:
            raise ValueError(f"pos_embed must be 'learn' or 'none', got {pos_embed!r}")
        self.pos_drop = nn.Dropout(pos_drop_rate)   # the official codes drop no embeddings (ViT's emb_dropout)
        mixer_kwargs = {"drop": drop_rate, "proj_drop": drop_rate, **(mixer_kwargs or {})}
        mlp_kwargs = {"drop": drop_rate, **(mlp_kwargs or {})}
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.ModuleList([
            MetaFormerBlock(
                embed_dim,
                create_mixer(mixer, embed_dim, n, grid, **mixer_kwargs),
                create_channel_mlp(mlp, embed_dim, mlp_hidden_dim, grid, **mlp_kwargs),
                share_norm=share_norm, drop_path=dpr[i])
            for i in range(depth)])
        self.dia = DIALSTMCell(embed_dim, dia_reduction) if dia else None
        self.norm = nn.LayerNorm(embed_dim) if final_norm else nn.Identity()
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if weight_init == "trunc_normal":
            self.apply(_trunc_normal_init)
        elif weight_init != "torch":
            raise ValueError(f"weight_init must be 'torch' or 'trunc_normal', got {weight_init!r}")

    # --- timm model API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes, global_pool=None):
        if global_pool is not None:
            if global_pool == "token" and self.cls_token is None:
                raise ValueError("global_pool='token' needs a class token")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable

    def forward_features(self, x):
        """Images [B, C, H, W] → normed tokens [B, N(+1), d]."""
        x, grid = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        state = None
        for block in self.blocks:
            if self.dia is None:
                x = block(x, grid)
            else:
                delta = block.residual(x, grid)
                attn, state = self.dia(delta.mean(dim=1), state)
                x = x + delta * attn.unsqueeze(1)
        return self.norm(x)

    def forward_head(self, x, pre_logits=False):
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _trunc_normal_init(m):
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
