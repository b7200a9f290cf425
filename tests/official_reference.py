"""Plain-PyTorch re-statement of the official NiNformer, Activator and MLP-Mixer-baseline model code.

Written from /work/shared/reference/papers.md §1, §2 and §5 and read against the official repositories, in
their structure: the same classes, attribute names, module order and order of operations, so a state dict of
these modules has the official parameter names (`model.0.mgu.Mixer.token_mix.2.net.0.weight`, ...) and an
official checkpoint would load into them. Nothing here imports mixlab: it is the independent side of the
differential test in test_official_equivalence.py.

Sources (read, not copied):
- Abdullah-88/NiNformer @ 0ec85d46a82ea9472fdd28dde0b70dc0ca62a91a: `ninformer.py` (FeedForward, MixerBlock,
  MixerGatingUnit, NiNBlock, NiNformer; unchanged since the first upload b2c77fe as `core.py`) and `train.py`
  (NiNformerImageClassification, check_sizes).
- Abdullah-88/Activator @ 631c38a239b5ad1b4d211b080a4c06918a8e98cd: `activator.py` (FeedForward,
  ActivatorGatingUnit, ActivatorBlock, ACTIVATOR), `activator_only_GEGLU.py` (the same names without the
  second MLP) and `train.py` / `train_only_GEGLU.py` (ACTIVATORImageClassification). The model code is the
  same as the first upload 0abd14c / bf57559 up to blank lines.
- MLP-Mixer baseline: no official code exists; papers.md §5 says NiNformer's MixerBlock is one Mixer layer
  (token hidden = channel hidden = d_ffn), so the baseline is MixerBlock layers in the train.py wrapper.
"""
import torch
from torch import nn


class Rearrange(nn.Module):
    """Stand-in for einops.layers.torch.Rearrange (not a dependency) for the two patterns ninformer.py uses,
    'b n d -> b d n' and back: both swap the token and channel axes, as a view."""

    PATTERNS = ("b n d -> b d n", "b d n -> b n d")

    def __init__(self, pattern):
        super().__init__()
        if pattern not in self.PATTERNS:
            raise ValueError(f"Rearrange stand-in knows only {self.PATTERNS}, got {pattern!r}")
        self.pattern = pattern

    def forward(self, x):
        return x.permute(0, 2, 1)


# --- NiNformer: ninformer.py -------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """ninformer.py / activator.py FeedForward: Linear → GELU → Dropout → Linear → Dropout in one `net`."""

    def __init__(self, dim, hidden_dim, dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class MixerBlock(nn.Module):
    """ninformer.py MixerBlock: x + token_mix(x), then + channel_mix(x); each mix has its own LayerNorm."""

    def __init__(self, dim, num_patch, token_dim, channel_dim, dropout):
        super().__init__()
        self.token_mix = nn.Sequential(
            nn.LayerNorm(dim),
            Rearrange("b n d -> b d n"),
            FeedForward(num_patch, token_dim, dropout),
            Rearrange("b d n -> b n d"),
        )
        self.channel_mix = nn.Sequential(
            nn.LayerNorm(dim),
            FeedForward(dim, channel_dim, dropout),
        )

    def forward(self, x):
        x = x + self.token_mix(x)
        x = x + self.channel_mix(x)
        return x


class MixerGatingUnit(nn.Module):
    """ninformer.py MixerGatingUnit: proj(x) ⊙ Mixer(x), the projection first, no sigmoid on either factor."""

    def __init__(self, dim, seq_len, token_dim, channel_dim, dropout):
        super().__init__()
        self.Mixer = MixerBlock(dim, seq_len, token_dim, channel_dim, dropout)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        u, v = x, x
        u = self.proj(u)
        v = self.Mixer(v)
        return u * v


class NiNBlock(nn.Module):
    """ninformer.py NiNBlock: ONE `self.norm` applied before the gating unit and again before the FFN."""

    def __init__(self, d_model, d_ffn, seq_len, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mgu = MixerGatingUnit(d_model, seq_len, d_ffn, d_ffn, dropout)
        self.ffn = FeedForward(d_model, d_ffn, dropout)

    def forward(self, x):
        residual = x
        x = self.norm(x)
        x = self.mgu(x)
        x = x + residual
        residual = x
        x = self.norm(x)
        x = self.ffn(x)
        return x + residual


class NiNformer(nn.Module):
    """ninformer.py NiNformer: `num_layers` NiNBlocks in `self.model`."""

    def __init__(self, d_model, d_ffn, seq_len, num_layers, dropout):
        super().__init__()
        self.model = nn.Sequential(*[NiNBlock(d_model, d_ffn, seq_len, dropout) for _ in range(num_layers)])

    def forward(self, x):
        return self.model(x)


# --- the image-classification wrapper of train.py (both repositories) ---------------------------------------
def check_sizes(image_size, patch_size):
    """train.py check_sizes: the number of patches of a square image."""
    sqrt_num_patches, remainder = divmod(image_size, patch_size)
    assert remainder == 0, "`image_size` must be divisible by `patch_size`"
    return sqrt_num_patches ** 2


def _classify(net, x):
    """train.py forward of every *ImageClassification: Conv2d patches → [B, N, d] in row-major patch order
    (permute to B×H×W×d, then view) → the block stack → mean over tokens → linear classifier."""
    patches = net.patcher(x)
    batch_size, num_channels, _, _ = patches.shape
    patches = patches.permute(0, 2, 3, 1)
    patches = patches.view(batch_size, -1, num_channels)
    embedding = net.model(patches)
    embedding = embedding.mean(dim=1)
    return net.classifier(embedding)


class NiNformerImageClassification(NiNformer):
    """NiNformer train.py wrapper. Official quirk: it computes num_patches but builds with its `seq_len`
    argument (default 64, i.e. 32×32 with patch 4), so `seq_len=None` here takes the computed count, which is
    what a 28×28 run of the official code must pass (49)."""

    def __init__(self, image_size=32, patch_size=4, in_channels=3, num_classes=10, d_model=256, d_ffn=512,
                 seq_len=None, num_layers=4, dropout=0.5):
        num_patches = check_sizes(image_size, patch_size)
        super().__init__(d_model, d_ffn, seq_len or num_patches, num_layers, dropout)
        self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return _classify(self, x)


# --- Activator: activator.py -----------------------------------------------------------------------------
class ActivatorGatingUnit(nn.Module):
    """activator.py ActivatorGatingUnit: u = norm(GELU(proj_1 x)), v = norm(proj_2 x), proj_3(u ⊙ v).
    ONE LayerNorm(hidden) normalises both branches, and there is no dropout anywhere in the unit."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.proj_1 = nn.Linear(dim, hidden_dim)
        self.proj_2 = nn.Linear(dim, hidden_dim)
        self.proj_3 = nn.Linear(hidden_dim, dim)
        self.gelu = nn.GELU()
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, x):
        u, v = x, x
        u = self.proj_1(u)
        u = self.gelu(u)
        u = self.norm(u)
        v = self.proj_2(v)
        v = self.norm(v)
        g = u * v
        return self.proj_3(g)


class ActivatorBlock(nn.Module):
    """activator.py ActivatorBlock: ONE `self.norm` before the gating unit and again before the FFN."""

    def __init__(self, d_model, d_ffn, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.actgu = ActivatorGatingUnit(d_model, d_ffn)
        self.ffn = FeedForward(d_model, d_ffn, dropout)

    def forward(self, x):
        residual = x
        x = self.norm(x)
        x = self.actgu(x)
        x = x + residual
        residual = x
        x = self.norm(x)
        x = self.ffn(x)
        return x + residual


class ACTIVATOR(nn.Module):
    """activator.py ACTIVATOR: `num_layers` ActivatorBlocks in `self.model`."""

    def __init__(self, d_model, d_ffn, num_layers, dropout):
        super().__init__()
        self.model = nn.Sequential(*[ActivatorBlock(d_model, d_ffn, dropout) for _ in range(num_layers)])

    def forward(self, x):
        return self.model(x)


class ACTIVATORImageClassification(ACTIVATOR):
    """Activator train.py wrapper (no token-count dependence: Activator has no cross-token weights)."""

    def __init__(self, image_size=32, patch_size=4, in_channels=3, num_classes=10, d_model=256, d_ffn=512,
                 num_layers=4, dropout=0.5):
        check_sizes(image_size, patch_size)
        super().__init__(d_model, d_ffn, num_layers, dropout)
        self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return _classify(self, x)


# --- Activator without the second MLP: activator_only_GEGLU.py ---------------------------------------------
# The official file reuses the names ActivatorBlock / ACTIVATOR (and the identical ActivatorGatingUnit); here
# they carry an OnlyGEGLU suffix so both variants live in one module. Attribute names, hence parameter names,
# are the official ones.
class ActivatorBlockOnlyGEGLU(nn.Module):
    """activator_only_GEGLU.py ActivatorBlock: x + actgu(norm(x)); `dropout` is accepted and unused, the FFN
    is commented out in the official file."""

    def __init__(self, d_model, d_ffn, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.actgu = ActivatorGatingUnit(d_model, d_ffn)

    def forward(self, x):
        residual = x
        x = self.norm(x)
        x = self.actgu(x)
        return x + residual


class ACTIVATOROnlyGEGLU(nn.Module):
    """activator_only_GEGLU.py ACTIVATOR."""

    def __init__(self, d_model, d_ffn, num_layers, dropout):
        super().__init__()
        self.model = nn.Sequential(*[ActivatorBlockOnlyGEGLU(d_model, d_ffn, dropout) for _ in range(num_layers)])

    def forward(self, x):
        return self.model(x)


class ACTIVATOROnlyGEGLUImageClassification(ACTIVATOROnlyGEGLU):
    """train_only_GEGLU.py ACTIVATORImageClassification."""

    def __init__(self, image_size=32, patch_size=4, in_channels=3, num_classes=10, d_model=256, d_ffn=512,
                 num_layers=4, dropout=0.5):
        check_sizes(image_size, patch_size)
        super().__init__(d_model, d_ffn, num_layers, dropout)
        self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return _classify(self, x)


# --- MLP-Mixer baseline: NiNformer's MixerBlock in the train.py wrapper ----------------------------------------
class MixerImageClassification(nn.Module):
    """The papers' MLP-Mixer baseline as papers.md §5 describes it: Conv2d patcher, `num_layers` ninformer.py
    MixerBlocks (token hidden = channel hidden = d_ffn; separate LayerNorms, unlike NiNBlock), mean pool,
    linear classifier; no position embedding, no class token, no final norm."""

    def __init__(self, image_size=32, patch_size=4, in_channels=3, num_classes=10, d_model=256, d_ffn=512,
                 num_layers=4, dropout=0.5):
        super().__init__()
        num_patches = check_sizes(image_size, patch_size)
        self.model = nn.Sequential(*[MixerBlock(d_model, num_patches, d_ffn, d_ffn, dropout)
                                     for _ in range(num_layers)])
        self.patcher = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return _classify(self, x)


REFERENCE = {
    "ninformer_paper": NiNformerImageClassification,
    "activator_paper": ACTIVATORImageClassification,
    "activator_glu_paper": ACTIVATOROnlyGEGLUImageClassification,
    "mixer_paper": MixerImageClassification,
}


def build_reference(name, image_size=32, in_channels=3, num_classes=10, dtype=torch.float32):
    """The official-structure network that mixlab's `name` claims to be, at the papers' sizes."""
    net = REFERENCE[name](image_size=image_size, in_channels=in_channels, num_classes=num_classes)
    return net.to(dtype)
