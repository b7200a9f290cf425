"""Building blocks shared by every backbone: patch embedding, feed-forward MLPs, Local-ViT's conv FFN."""
from .patch import PatchEmbed
from .mlp import FeedForward, ConvFeedForward, create_channel_mlp, CHANNEL_MLPS
from .block import MetaFormerBlock

__all__ = ["PatchEmbed", "FeedForward", "ConvFeedForward", "create_channel_mlp", "CHANNEL_MLPS", "MetaFormerBlock"]
