import torch.fx
from torch import nn


def check_image(x, in_chans, img_size, patch_size, dynamic, model_name):
    """x unchanged, or a one-line error naming the expected input. A torch.fx leaf (wrapped below): a traced
    model keeps the check as one call on the real input instead of failing on symbolic shapes."""
    if x.ndim != 4:
        raise ValueError(f"{model_name} expects images [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
    _, c, h, w = x.shape
    if c != in_chans:
        raise ValueError(f"{model_name} was built for {in_chans}-channel images, got {c} channels; "
                         f"rebuild it with in_chans={c}")
    if dynamic:
        if h % patch_size or w % patch_size:
            raise ValueError(f"{model_name}: image size {h}×{w} is not a multiple of the patch size {patch_size}")
    elif (h, w) != (img_size, img_size):
        raise ValueError(f"{model_name} expects {img_size}×{img_size} images (its token count is fixed at "
                         f"{(img_size // patch_size) ** 2}), got {h}×{w}; rebuild it with img_size={h} "
                         f"or resize the input to {img_size}×{img_size}")
    return x


torch.fx.wrap("check_image")


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches → tokens: Conv2d(C_in→d, kernel=p, stride=p), flattened to [B, N, d].

    The image size is fixed at construction (`img_size`); a different input size raises a one-line error that
    names the expected size, unless `dynamic_img_size` is set (mixers that accept any token count). forward
    returns the tokens and the patch grid (H, W) of this input.
    """

    def __init__(self, img_size=32, patch_size=4, in_chans=3, embed_dim=256, dynamic_img_size=False,
                 model_name=None):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_size = dynamic_img_size
        self.model_name = model_name or "this model"
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def check_input(self, x):
        return check_image(x, self.in_chans, self.img_size, self.patch_size, self.dynamic_img_size, self.model_name)

    def forward(self, x):
        x = self.proj(self.check_input(x))
        if self.dynamic_img_size:
            h, w = x.shape[-2:]
            grid = (h, w)
        else:
            grid = self.grid_size
        return x.flatten(2).transpose(1, 2), grid
