"""Building blocks shared by every backbone: the mixer contract, patch embedding, feed-forward MLPs, Local-ViT's
conv FFN, the MetaFormer block."""
from .contract import capabilities, check_options, image_to_tokens, tokens_to_image
from .patch import PatchEmbed
from .mlp import FeedForward, ConvFeedForward, channel_mlp_class, create_channel_mlp, CHANNEL_MLPS
from .block import MetaFormerBlock

__all__ = ["PatchEmbed", "FeedForward", "ConvFeedForward", "channel_mlp_class", "create_channel_mlp", "CHANNEL_MLPS",
           "MetaFormerBlock", "capabilities", "check_options", "image_to_tokens", "tokens_to_image"]
