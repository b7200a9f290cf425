"""timm peers: `VisionTransformer` and `MlpMixer` built at the configuration of a mixlab isotropic model.

Same image size, patch, width, depth, hidden sizes, heads, dropout, class count, mean pooling and no class
token, so every figure of a mixlab row can be given as a ratio mixlab / timm. Attention models are paired
with the ViT, token-MLP models (MLP-Mixer, NiNformer) with the Mixer, every other isotropic model with the
ViT (the baseline the papers compare against). Models without a patch-token backbone (AFFNet, DIA-ResNet)
have no peer.
"""
from dataclasses import asdict, dataclass

MIXER_PEER = {"attention": "vit", "token_mlp": "mixer", "nin_gating": "mixer"}


@dataclass(frozen=True)
class PeerConfig:
    kind: str                 # "vit" or "mixer"
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    mlp_hidden: int
    token_hidden: int
    num_heads: int
    drop: float
    drop_path: float = 0.0    # stochastic depth (timm's drop_path_rate), e.g. the strong recipe's 0.1

    @property
    def name(self):
        base = "timm_vit" if self.kind == "vit" else "timm_mixer"
        return f"{base}_d{self.embed_dim}_l{self.depth}_p{self.patch_size}_{self.img_size}px"


def _first(module, cls_name):
    return next((m for m in module.modules() if type(m).__name__ == cls_name), None)


def peer_config(model):
    """The PeerConfig matching a mixlab IsotropicNet, or None for models without a patch-token backbone."""
    if type(model).__name__ != "IsotropicNet":
        return None
    block = model.blocks[0]
    kind = MIXER_PEER.get(model.mixer_name, "vit")
    mlp = block.channel_mlp
    # Activator-GLU has no channel MLP; its peer ViT keeps the paper's 2·d hidden.
    mlp_hidden = 2 * model.embed_dim if mlp is None else (getattr(mlp.fc1, "out_features", None)
                                                          or mlp.fc1.out_channels)
    token_mlp = _first(block.token_mixer, "TokenMlp")
    token_hidden = token_mlp.mlp.fc1.out_features if token_mlp is not None else mlp_hidden
    attn = _first(block.token_mixer, "Attention")
    return PeerConfig(kind=kind, img_size=model.patch_embed.img_size, patch_size=model.patch_embed.patch_size,
                      in_chans=model.in_chans, num_classes=model.num_classes, embed_dim=model.embed_dim,
                      depth=len(model.blocks), mlp_hidden=mlp_hidden, token_hidden=token_hidden,
                      num_heads=attn.num_heads if attn is not None else 8, drop=float(model.pos_drop.p))


def create_peer(cfg):
    """Build the timm model for a PeerConfig (random init; weights do not change cost)."""
    if cfg.kind == "vit":
        from timm.models.vision_transformer import VisionTransformer
        return VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                                 num_classes=cfg.num_classes, global_pool="avg", embed_dim=cfg.embed_dim,
                                 depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_hidden / cfg.embed_dim,
                                 class_token=False, drop_rate=cfg.drop, proj_drop_rate=cfg.drop,
                                 drop_path_rate=cfg.drop_path)
    if cfg.kind == "mixer":
        from timm.models.mlp_mixer import MlpMixer
        ratio = (cfg.token_hidden / cfg.embed_dim, cfg.mlp_hidden / cfg.embed_dim)
        return MlpMixer(num_classes=cfg.num_classes, img_size=cfg.img_size, in_chans=cfg.in_chans,
                        patch_size=cfg.patch_size, num_blocks=cfg.depth, embed_dim=cfg.embed_dim,
                        mlp_ratio=ratio, drop_rate=cfg.drop, proj_drop_rate=cfg.drop, drop_path_rate=cfg.drop_path)
    raise ValueError(f"unknown peer kind {cfg.kind!r}; choose 'vit' or 'mixer'")


def describe(cfg):
    return asdict(cfg)
