"""The contract of the isotropic backbone's token mixers and channel MLPs.

    Mixer(dim, num_tokens, grid, **own_options)               forward(x [B, N, C], grid=None) -> [B, N, C]
    Mlp(dim, hidden_dim, num_tokens, grid, **own_options)     forward(x [B, N, C], grid=None) -> [B, N, C]

- `num_tokens` counts every token the mixer will see, prefix (class) tokens included; `grid = (H, W)` is the
  patch grid, so `num_tokens − H·W` tokens are prefix tokens and stand before the patch tokens.
- `grid` in forward is the patch grid of the current input (the backbone always passes it); `None` means the
  grid given at construction. Code that folds tokens to an image uses `tokens_to_image`, which never branches
  on a tensor's value, so models stay traceable by torch.fx.
- The constructor takes exactly its own keyword options: `create_mixer` / `create_channel_mlp` check them
  against the signature and refuse an unknown one in one line that lists the valid ones.

Capabilities are class attributes, read by the backbone (never a list of names):

    fixed_tokens          the weights depend on the token count (token MLP): the image size is fixed
    needs_grid            the mixer folds the patch tokens to the (H, W) grid (pooling, AFF, conv FFN)
    supports_class_token  the mixer accepts N + 1 tokens (a class token before the patches)
    drop_options          the keyword options the backbone fills with its `drop_rate` unless set explicitly

A class that declares nothing is taken to have a free token count, no grid, and no class-token support.
"""
import inspect
from typing import TYPE_CHECKING

from ..fileio import first_line

if TYPE_CHECKING:
    import torch

CAPABILITIES = ("fixed_tokens", "needs_grid", "supports_class_token")
_DEFAULTS = {"fixed_tokens": False, "needs_grid": False, "supports_class_token": False}
# The positional part of each contract: not options.
MIXER_CONTRACT = ("self", "dim", "num_tokens", "grid")
MLP_CONTRACT = ("self", "dim", "hidden_dim", "num_tokens", "grid")


def capabilities(cls: type) -> dict[str, bool]:
    """{capability: bool} of a mixer (or channel-MLP) class; undeclared ones take the conservative default."""
    return {k: bool(getattr(cls, k, _DEFAULTS[k])) for k in CAPABILITIES}


def own_options(cls: type, contract: tuple[str, ...] = MIXER_CONTRACT) -> list[str] | None:
    """The keyword options a constructor accepts beyond the contract's positional arguments; None when it takes
    **kwargs (then nothing can be checked)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return sorted(n for n, p in params.items() if n not in contract and p.kind is not inspect.Parameter.VAR_POSITIONAL)


def check_options(kind: str, name: str, cls: type, options: dict, contract: tuple[str, ...] = MIXER_CONTRACT) -> None:
    """Refuse, in one line, keyword options that `cls` does not accept (a typo in mixer_kwargs / mlp_kwargs)."""
    valid = own_options(cls, contract)
    if valid is None:
        return
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(valid) or 'none'}")


def check_mixer_contract(cls: type, label: str, dim: int = 16, grid: tuple[int, int] = (4, 4)) -> type:
    """`cls` unchanged, or a one-line ValueError saying how it breaks the mixer contract (module docstring):
    an nn.Module class whose constructor takes (dim, num_tokens, grid) and whose forward(x, grid) maps a
    finite [2, N, dim] batch to a finite [2, N, dim] one through which a gradient flows. Checked on a
    16-channel 4×4 grid before anything trains."""
    import torch
    from torch import nn

    bad = f"{label} does not follow the mixer contract (mixlab.layers.contract):"
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"{bad} it is not a torch.nn.Module class")
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [n for n in MIXER_CONTRACT[1:] if n not in params and not takes_any]
    if missing:
        raise ValueError(f"{bad} its constructor takes no {', '.join(missing)} (Mixer(dim, num_tokens, grid))")
    n = grid[0] * grid[1]
    try:
        module = cls(dim, num_tokens=n, grid=grid)
    except Exception as e:   # noqa: BLE001 (a user's constructor may fail any way; one line says how)
        raise ValueError(f"{bad} Mixer({dim}, num_tokens={n}, grid={grid}) failed: {type(e).__name__}: "
                         f"{first_line(e, '')}") from None
    x = torch.randn(2, n, dim, requires_grad=True)
    try:
        out = module(x, grid=grid)
    except Exception as e:   # noqa: BLE001
        raise ValueError(f"{bad} forward(x [2, {n}, {dim}], grid={grid}) failed: {type(e).__name__}: "
                         f"{first_line(e, '')}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n, dim):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{bad} forward(x [2, {n}, {dim}]) returned {got}, not [2, {n}, {dim}]")
    if not torch.isfinite(out).all():
        raise ValueError(f"{bad} forward returned non-finite values on a random input")
    if not out.requires_grad:
        raise ValueError(f"{bad} its output does not depend on its input through autograd (no gradient flows)")
    return cls



def tokens_to_image(x: "torch.Tensor", grid: tuple[int, int]) -> "torch.Tensor":
    """Patch tokens [B, H·W, C] → image [B, C, H, W]."""
    b, _, c = x.shape
    h, w = grid
    return x.transpose(1, 2).reshape(b, c, h, w)


def image_to_tokens(img: "torch.Tensor") -> "torch.Tensor":
    """Image [B, C, H, W] → tokens [B, H·W, C]."""
    return img.flatten(2).transpose(1, 2)


def check_token_count(x, expected, grid, what):
    """x unchanged, or a one-line error when a fixed-token mixer gets another token count. A module that calls
    it declares `torch.fx.wrap("check_token_count")`: traced graphs then call it as one opaque step, so the
    check still runs on real tensors instead of failing on symbolic shapes."""
    n = x.shape[1]
    if n != expected:
        prefix = expected - grid[0] * grid[1]
        extra = f" + {prefix} class token" if prefix else ""
        raise ValueError(f"{what} is built for {expected} tokens (a {grid[0]}×{grid[1]} patch grid{extra}), got "
                         f"{n}: rebuild the model with the img_size of your images")
    return x
