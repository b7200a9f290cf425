from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches → tokens: Conv2d(C_in→d, kernel=p, stride=p), flattened to [B, N, d].

    The image size is fixed at construction (`img_size`); a different input size raises a one-line error that
    names the expected size, unless `dynamic_img_size` is set (mixers that accept any token count).
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
        if x.ndim != 4:
            raise ValueError(f"{self.model_name} expects images [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
        _, c, h, w = x.shape
        if c != self.in_chans:
            raise ValueError(f"{self.model_name} was built for {self.in_chans}-channel images, got {c} channels; "
                             f"rebuild it with in_chans={c}")
        if self.dynamic_img_size:
            if h % self.patch_size or w % self.patch_size:
                raise ValueError(f"{self.model_name}: image size {h}×{w} is not a multiple of the patch size "
                                 f"{self.patch_size}")
        elif (h, w) != (self.img_size, self.img_size):
            raise ValueError(f"{self.model_name} expects {self.img_size}×{self.img_size} images (its token count "
                             f"is fixed at {self.num_patches}), got {h}×{w}; rebuild it with img_size={h} "
                             f"or resize the input to {self.img_size}×{self.img_size}")

    def forward(self, x):
        self.check_input(x)
        x = self.proj(x)
        grid = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), tuple(grid)
