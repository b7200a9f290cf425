"""The demo's configs: the five token mixers of the seed papers at one small, equal size for a 3-minute CPU demo.

`mixlab demo` compares attention (ViT), the token-mixing MLP (MLP-Mixer), NiNformer's gating, Activator's GLU and
AFF on Fashion-MNIST within about three minutes of training on two CPU cores. Every config shares the skeleton —
patch 7 on 28 px (4×4 = 16 tokens: a third of the cost of patch 4's 49 tokens, which lets the demo train on all
60,000 images within its three minutes — measured in docs/BENCHMARKS.md), width 64, depth 2, channel MLP 128, final
norm, mean pooling, truncated-normal init, no dropout (too short a run to overfit) — and differs only in the token
mixer, as in the papers' "equalised" comparisons. They are registered like every model (`mixlab models '*_demo'`);
the paper configs stay the paper's.
"""
from .isotropic_configs import _factory

DEMO = dict(patch_size=7, embed_dim=64, depth=2, mlp_hidden_dim=128, global_pool="avg", final_norm=True,
            drop_rate=0.0, weight_init="trunc_normal")
MIXERS = {
    "vit_demo": dict(mixer="attention", mixer_kwargs={"num_heads": 4}, pos_embed="learn"),
    "mixer_demo": dict(mixer="token_mlp", mixer_kwargs={"token_hidden_dim": 64}),
    "ninformer_demo": dict(mixer="nin_gating", mixer_kwargs={"hidden_dim": 64}),
    "activator_demo": dict(mixer="glu_gating", mixer_kwargs={"hidden_dim": 128}),
    "aff_demo": dict(mixer="aff", mixer_kwargs={"num_groups": 4}),
}
FAMILIES = {"vit_demo": "vit", "mixer_demo": "mixer", "ninformer_demo": "ninformer",
            "activator_demo": "activator", "aff_demo": "aff"}

for _name, _mixer in MIXERS.items():
    # create_model passes the registered input_size (1×28×28) to the builder
    _factory(_name, {**DEMO, **_mixer}, FAMILIES[_name], paper=False, input_size=(1, 28, 28), num_classes=10,
             source="mixlab demo config (train/demo.py)")
