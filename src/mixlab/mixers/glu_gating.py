from torch import nn

from ..layers.act import act_layer


class GluGating(nn.Module):
    """Activator gating unit (Abdullah & Aydin, arXiv 2405.15953): a GEGLU with LayerNorm on both branches.

    u = LN(act(X W₁ + b₁)),  v = LN(X W₂ + b₂),  out = (u ⊙ v) W₃ + b₃,  W₁, W₂ ∈ R^{d×h}, W₃ ∈ R^{h×d}.
    The official code normalises u and v with *one* LayerNorm(h) module (`share_norm=True`) and has no dropout
    inside the unit; `gate_drop` (default 0, not fed from the backbone's drop_rate) drops u ⊙ v as an explicit
    option. It acts on each token alone: as published there is no cross-token operation, so the only spatial
    aggregation of an Activator network is the final mean pool, and a class token would never see the image.
    `act` selects GEGLU (gelu), SwiGLU (silu) or ReGLU (relu).
    """

    fixed_tokens, needs_grid, supports_class_token = False, False, False
    drop_options = ()

    def __init__(self, dim, num_tokens=None, grid=None, hidden_dim=512, act="gelu", share_norm=True,
                 use_norm=True, gate_drop=0.0):
        super().__init__()
        act_cls = act_layer(act, "GLU gating")
        self.w_gate = nn.Linear(dim, hidden_dim)
        self.act = act_cls()
        self.w_value = nn.Linear(dim, hidden_dim)
        self.norm_gate = nn.LayerNorm(hidden_dim) if use_norm else nn.Identity()
        self.norm_value = None if (share_norm or not use_norm) else nn.LayerNorm(hidden_dim)
        self.gate_drop = nn.Dropout(gate_drop) if gate_drop > 0 else nn.Identity()
        self.w_out = nn.Linear(hidden_dim, dim)

    def forward(self, x, grid=None):
        u = self.norm_gate(self.act(self.w_gate(x)))
        norm_value = self.norm_value if self.norm_value is not None else self.norm_gate
        v = norm_value(self.w_value(x))
        return self.w_out(self.gate_drop(u * v))
