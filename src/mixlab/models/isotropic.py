"""One isotropic backbone for ViT, MLP-Mixer, Local-ViT, NiNformer, Activator and AFF-on-tokens.

patch embedding → L × MetaFormerBlock(token mixer, channel MLP) [→ DIA recalibration] → norm → pool → head.
The papers differ only in the token mixer (and Local-ViT in the channel MLP), so each is a named config.
"""
import numbers

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices

from ..layers import MetaFormerBlock, PatchEmbed, capabilities, channel_mlp_class, create_channel_mlp, tokens_to_image
from ..layers.dia import DIALSTMCell
from ..layers.head import ClassifierApi
from ..mixers import create_mixer, mixer_class, mixer_name
from ..registry import register_model_class

POOLS = ("avg", "token", "")


@register_model_class
class IsotropicNet(ClassifierApi, nn.Module):
    """MetaFormer-style isotropic classifier with a pluggable token mixer and channel MLP (timm model API).

    Args:
        mixer / mixer_kwargs: token mixer name ('attention', 'token_mlp', 'nin_gating', 'glu_gating', 'aff',
            'identity', 'pooling', or any registered one) or class, and its own options.
        mlp / mlp_hidden_dim / mlp_kwargs: channel MLP ('mlp', 'conv_mlp' = Local-ViT, None = no second
            sub-layer) and its options.
        share_norm: one LayerNorm for both sub-layers of a block (official NiNformer/Activator code).
        pos_embed: 'learn' (learned absolute, as ViT) or 'none'.
        class_token / global_pool: a class token before the patches (mixers that declare
            `supports_class_token`); pooling 'token' (the class token), 'avg' (mean over the patch tokens) or
            '' (none: forward_head returns the tokens).
        final_norm: LayerNorm on the tokens before pooling (ViT), absent in the NiNformer/Activator code.
        drop_rate: dropout inside the mixers and MLPs (0.5 in the paper configs), fed to each module's
            `drop_options`; pos_drop_rate: dropout on the embedded tokens (0 in every official code).
        dia: share one DIA-LSTM across all blocks; each block's update Δ becomes Δ ⊙ h_t (DIANet on a
            transformer, arXiv 2210.16101).
        weight_init: 'torch' (PyTorch defaults, as the official code of the papers) or 'trunc_normal' (timm ViT).

    Features (timm): `feature_info` has one entry per block (`blocks.i`, stride = patch size);
    `forward_intermediates` returns the per-block tokens folded to [B, C, H, W] at the patch grid ('NCHW') or
    as [B, N, C] ('NLC'), prefix tokens removed.
    """

    default_norm = "cifar10"   # the `mixlab` recipe at the native 3×32×32 input (mixlab.data.normalization)
    first_conv, classifier = "patch_embed.proj", "head"   # timm's pretrained-cfg keys (mixlab.timm_models)

    @classmethod
    def timm_cfg(cls, patch_size=4, mixer="attention", pos_embed="none", **_):
        """What timm's pretrained cfg says of a config without building it: forward_features' stride is the
        patch size; the input size is fixed when a mixer's weights depend on the token count or a learned
        position embedding does (the rule `PatchEmbed(dynamic_img_size=...)` is built with below)."""
        return {"reduction": patch_size,
                "fixed_input_size": capabilities(mixer_class(mixer))["fixed_tokens"] or pos_embed != "none"}

    def __init__(self, img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=256, depth=4,
                 mixer="attention", mixer_kwargs=None, mlp="mlp", mlp_hidden_dim=512, mlp_kwargs=None,
                 share_norm=False, pos_embed="none", class_token=False, global_pool="avg", final_norm=False,
                 drop_rate=0.0, pos_drop_rate=0.0, drop_path_rate=0.0, dia=False, dia_reduction=4, weight_init="torch",
                 model_name=None):
        init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        name = model_name or type(self).__name__
        for arg in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "mlp_hidden_dim"):
            _check_int(name, arg, init_kwargs[arg], minimum=1)
        _check_int(name, "num_classes", num_classes, minimum=0)
        _check_pool(global_pool, class_token)
        mixer_cls, mlp_cls = mixer_class(mixer), channel_mlp_class(mlp)
        mixer_caps = capabilities(mixer_cls)
        if class_token:
            for kind, label, cls in (("token mixer", mixer, mixer_cls), ("channel MLP", mlp, mlp_cls)):
                caps = capabilities(cls) if cls is not None else {"supports_class_token": True}
                if not caps["supports_class_token"]:
                    why = "works on the patch grid" if caps["needs_grid"] else "does not declare supports_class_token"
                    raise ValueError(f"{name}: {kind} {_label(label)} {why} and cannot take a class token; "
                                     f"use class_token=False with global_pool='avg'")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.mixer_name = mixer if isinstance(mixer, str) else (mixer_name(mixer_cls) or mixer_cls.__name__)
        self.grad_checkpointing = False
        dynamic = not type(self).timm_cfg(patch_size, mixer, pos_embed)["fixed_input_size"]
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, dynamic_img_size=dynamic,
                                      model_name=name)
        grid, n = self.patch_embed.grid_size, self.patch_embed.num_patches
        self.num_prefix_tokens = 1 if class_token else 0
        num_tokens = n + self.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        if pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, embed_dim) * 0.02)
        elif pos_embed == "none":
            self.pos_embed = None
        else:
            raise ValueError(f"pos_embed must be 'learn' or 'none', got {pos_embed!r}")
        self.pos_drop = nn.Dropout(pos_drop_rate)   # the official codes drop no embeddings (ViT's emb_dropout)
        mixer_kwargs = _with_drop(mixer_cls, mixer_kwargs, drop_rate)
        mlp_kwargs = _with_drop(mlp_cls, mlp_kwargs, drop_rate)
        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList([
            MetaFormerBlock(
                embed_dim,
                create_mixer(mixer, embed_dim, num_tokens, grid, **mixer_kwargs),
                create_channel_mlp(mlp, embed_dim, mlp_hidden_dim, num_tokens, grid, **mlp_kwargs),
                share_norm=share_norm, drop_path=dpr[i])
            for i in range(depth)])
        self.dia = DIALSTMCell(embed_dim, dia_reduction) if dia else None
        self.norm = nn.LayerNorm(embed_dim) if final_norm else nn.Identity()
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        if weight_init not in ("torch", "trunc_normal"):
            raise ValueError(f"weight_init must be 'torch' or 'trunc_normal', got {weight_init!r}")
        if weight_init == "trunc_normal" and not self.patch_embed.proj.weight.is_meta:   # meta: no values to set
            self.apply(_trunc_normal_init)
        self.init_kwargs = init_kwargs   # what `mixlab.save` records for a net built without a registered name

    # --- timm model API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        """Parameter groups for layer-wise lr decay: embeddings, each block, then the shared DIA cell and norm."""
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^dia|^norm", (99999,))])

    def check_global_pool(self, global_pool):
        _check_pool(global_pool, self.cls_token is not None)

    def _embed(self, x):
        x, grid = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.pos_drop(x), grid

    def _block(self, block, x, grid, state):
        """One block; with DIA its update Δ is recalibrated by the shared LSTM, whose state is returned."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            out = checkpoint(block, x, grid, self.dia, state, use_reentrant=False)
        else:
            out = block(x, grid, self.dia, state)
        return (out, state) if self.dia is None else out

    def forward_features(self, x):
        """Images [B, C, H, W] → normed tokens [B, N(+1), d]."""
        x, grid = self._embed(x)
        state = None
        for block in self.blocks:
            x, state = self._block(block, x, grid, state)
        return self.norm(x)

    def forward_intermediates(self, x, indices=None, return_prefix_tokens=False, norm=False, stop_early=False,
                              output_fmt="NCHW", intermediates_only=False):
        """(final features, [tokens after each selected block]); timm's contract.

        indices: None (all blocks), n (the last n) or a list of block indices; norm: apply the final norm to
        each; stop_early: skip the blocks after the last selected one; output_fmt: 'NCHW' (folded to the patch
        grid) or 'NLC'; return_prefix_tokens: pair each with its class token(s).
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x, grid = self._embed(x)
        blocks = self.blocks[:max_index + 1] if stop_early else self.blocks
        intermediates, state = [], None
        for i, block in enumerate(blocks):
            x, state = self._block(block, x, grid, state)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm else x)
        p = self.num_prefix_tokens
        prefixes = [y[:, :p] for y in intermediates]
        intermediates = [y[:, p:] for y in intermediates]
        if output_fmt == "NCHW":
            intermediates = [tokens_to_image(y, grid) for y in intermediates]
        if return_prefix_tokens and p:
            intermediates = list(zip(intermediates, prefixes))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True):
        """Drop the blocks after the last of `indices` (and the final norm / head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_head(self, x, pre_logits=False):
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _label(module):
    return repr(module) if isinstance(module, str) else module.__name__


def _check_int(model, arg, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{model}: {arg} must be an integer ≥ {minimum}, got {value!r}")


def _check_pool(global_pool, class_token):
    if global_pool not in POOLS:
        raise ValueError(f"global_pool must be 'avg', 'token' or '', got {global_pool!r}")
    if global_pool == "token" and not class_token:
        raise ValueError("global_pool='token' needs class_token=True")


def _with_drop(cls, options, drop_rate):
    """The module's options, with the backbone's drop_rate filled into its declared `drop_options`."""
    options = dict(options or {})
    for key in getattr(cls, "drop_options", ()) if cls is not None else ():
        options.setdefault(key, drop_rate)
    return options


def _trunc_normal_init(m):
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
