"""Named configs of the isotropic backbone.

`*_paper`: the official code of NiNformer / Activator and the baselines they compare against, quirks kept
(d=256, hidden 512, depth 4, patch 4, dropout 0.5, mean pooling, no class token, no final norm, PyTorch
default init; ViT/Local-ViT with 8 heads and a learned position embedding; NiNformer/Activator share one
LayerNorm between the two sub-layers of a block).
`*_tiny` / `*_small`: better-scaled configs for real use (deeper, wider MLP ratio 4, stochastic depth,
final norm, truncated-normal init) — the same mixers, so comparisons stay fair.
"""
from ..registry import register_model
from .isotropic import IsotropicNet

PAPER = dict(patch_size=4, embed_dim=256, depth=4, mlp_hidden_dim=512, drop_rate=0.5, global_pool="avg",
             final_norm=False, weight_init="torch")
MIXERS_PAPER = {
    "vit": dict(mixer="attention", mixer_kwargs={"num_heads": 8}, pos_embed="learn"),
    "mixer": dict(mixer="token_mlp", mixer_kwargs={"token_hidden_dim": 512}),
    "localvit": dict(mixer="attention", mixer_kwargs={"num_heads": 8}, mlp="conv_mlp", pos_embed="learn"),
    "ninformer": dict(mixer="nin_gating", mixer_kwargs={"hidden_dim": 512}, share_norm=True),
    "activator": dict(mixer="glu_gating", mixer_kwargs={"hidden_dim": 512}, share_norm=True),
    "activator_glu": dict(mixer="glu_gating", mixer_kwargs={"hidden_dim": 512}, mlp=None),
}
PAPER_SOURCES = {
    "vit": "ViT baseline of NiNformer/Activator (arXiv 2403.02411, 2405.15953); hyper-parameters as the papers' equalised setting",
    "mixer": "MLP-Mixer baseline of NiNformer/Activator; Mixer layer as NiNformer's MixerBlock",
    "localvit": "Local-ViT baseline of NiNformer (arXiv 2104.05707 FFN: 1×1 → Hardswish → dw3×3 → Hardswish → 1×1)",
    "ninformer": "NiNformer, official ninformer.py (Abdullah-88/NiNformer)",
    "activator": "Activator with second MLP, official activator.py (Abdullah-88/Activator)",
    "activator_glu": "Activator GLU only, official activator_only_GEGLU.py (Abdullah-88/Activator)",
}


def _factory(name, base, family, **defaults):
    def build(num_classes=10, in_chans=3, img_size=32, **overrides):
        kwargs = {**base, **overrides}
        for key in ("mixer_kwargs", "mlp_kwargs"):   # merge, so one option can be overridden alone
            if key in base and key in overrides:
                kwargs[key] = {**base[key], **overrides[key]}
        return IsotropicNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, model_name=name,
                            **kwargs)

    build.__name__ = name
    register_model(name, model_class=IsotropicNet, model_kwargs=base, family=family, **defaults)(build)
    return build


# The paper configs are trained with the `paper` recipe, the official Normalize(0.5, 0.5): timm's data config
# says so (norm="half"); every other isotropic config follows the class default (CIFAR-10 statistics).
for fam, spec in MIXERS_PAPER.items():
    _factory(f"{fam}_paper", {**PAPER, **spec}, fam, paper=True, source=PAPER_SOURCES[fam], norm="half")

# DIANet's shared LSTM on the paper ViT: one DIA module for all four blocks.
_factory("dia_vit_paper", {**PAPER, **MIXERS_PAPER["vit"], "dia": True}, "dia",
         source="DIA on a transformer (arXiv 2210.16101) over vit_paper", norm="half")
# AFF as a token mixer at the paper size: the isotropic counterpart of AFFNet for equal-size comparisons.
_factory("aff_paper_size", {**PAPER, "mixer": "aff", "mixer_kwargs": {"num_groups": 8}}, "aff",
         source="AFF token mixer (arXiv 2307.14008) in the NiNformer-paper isotropic setting")

MODERN = dict(patch_size=4, global_pool="avg", final_norm=True, drop_rate=0.0, weight_init="trunc_normal")
SIZES = {"tiny": dict(embed_dim=192, depth=6, mlp_hidden_dim=768, heads=3, drop_path_rate=0.1),
         "small": dict(embed_dim=384, depth=8, mlp_hidden_dim=1536, heads=6, drop_path_rate=0.2)}


def _modern_mixers(size):
    h = size["heads"]
    hid = size["mlp_hidden_dim"]
    return {
        "vit": dict(mixer="attention", mixer_kwargs={"num_heads": h}, pos_embed="learn"),
        "mixer": dict(mixer="token_mlp", mixer_kwargs={"token_hidden_dim": hid // 2}),
        "localvit": dict(mixer="attention", mixer_kwargs={"num_heads": h}, mlp="conv_mlp", pos_embed="learn"),
        "ninformer": dict(mixer="nin_gating", mixer_kwargs={"hidden_dim": hid // 2}),
        "activator": dict(mixer="glu_gating", mixer_kwargs={"hidden_dim": hid // 2, "share_norm": False}),
        "aff": dict(mixer="aff", mixer_kwargs={"num_groups": 8}),
        "poolformer": dict(mixer="pooling"),
        "identityformer": dict(mixer="identity"),
        "dia_vit": dict(mixer="attention", mixer_kwargs={"num_heads": h}, pos_embed="learn", dia=True),
    }


for size_name, size in SIZES.items():
    dims = {k: v for k, v in size.items() if k != "heads"}
    for fam, spec in _modern_mixers(size).items():
        family = "dia" if fam.startswith("dia") else fam
        _factory(f"{fam}_{size_name}", {**MODERN, **dims, **spec}, family)
