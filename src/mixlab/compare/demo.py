"""`mixlab demo`: the smallest protocol of `mixlab compare`, on Fashion-MNIST.

The five token mixers of the seed papers — attention (ViT), the token-mixing MLP (MLP-Mixer), NiNformer's
gating, Activator's GLU and AFF's adaptive frequency filter — in compare's `demo` skeleton (patch 7 → 4×4
tokens on 28 px, width 64, depth 2, channel MLP 128: exactly the `*_demo` configs), one seed, a budget of
3 epochs of all 60,000 training images with the `demo` recipe (2-2½ minutes of training on two CPU cores,
docs/BENCHMARKS.md). On a GPU, compare's `paper` skeleton (the NiNformer/Activator papers' size) for 10 epochs
in fp32 instead. It is `run_compare` with these settings — the same plan, run directories, resume and table —
so what the demo prints is a compare table, and `mixlab compare` with the same flags gives the same rows.
"""
from dataclasses import dataclass, replace

from .run import CompareConfig, run_compare

DATASET = "fashion-mnist"
MIXERS = ("attention", "token_mlp", "nin_gating", "glu_gating", "aff")
NEXT_STEP = ("mixlab compare --mixers attention,token_mlp,nin_gating,glu_gating,aff,pooling,identity,random,dwconv "
             "--data fashion-mnist --skeleton demo --budget 1e12flops --seeds 3   # with floors and error bars")


@dataclass(frozen=True)
class DemoProtocol:
    skeleton: str
    epochs: int
    recipe: str
    batch_size: int
    precision: str | None = None   # None: the recipe's


CPU_PROTOCOL = DemoProtocol("demo", 3, "demo", 128)
# fp32 on the GPU too: the paper-size ViT is known to collapse to chance under bf16 autocast with the paper
# recipe (docs/models.md); 10 epochs is sized from the models' FLOPs for ~3 minutes on one H100 (unmeasured).
GPU_PROTOCOL = DemoProtocol("paper", 10, "mixlab", 512, precision="fp32")


def demo_config(out: str, device_type: str = "cpu", mixers=None, epochs: int | None = None,
                subset: int | None = None, batch_size: int | None = None, seeds: int = 1, data_dir=None,
                device: str = "auto") -> tuple[CompareConfig, DemoProtocol]:
    """The compare the demo runs on a device of `device_type` ('cuda' or anything else), and its protocol."""
    protocol = GPU_PROTOCOL if device_type == "cuda" else CPU_PROTOCOL
    protocol = replace(protocol, epochs=epochs or protocol.epochs, batch_size=batch_size or protocol.batch_size)
    cc = CompareConfig(mixers=list(mixers or MIXERS), data=DATASET, budget=f"{protocol.epochs}epochs", seeds=seeds,
                       recipe=protocol.recipe, out=str(out), skeleton=protocol.skeleton, subset=subset,
                       batch_size=protocol.batch_size, device=device, data_dir=data_dir,
                       overrides={"precision": protocol.precision} if protocol.precision else {},
                       baseline="attention" if "attention" in (mixers or MIXERS) else None)
    return cc, protocol


def run_demo(out=None, mixers=None, device="auto", epochs=None, subset=None, batch_size=None, seeds=1,
             data_dir=None, log=print, command=None):
    """Find (or fetch) Fashion-MNIST, then run the demo's compare; returns (result, protocol, demo directory).

    A demo directory run again goes on where it is, as any compare does: finished runs are read back, an
    interrupted one resumed, another request refused in one line (choose another --out)."""
    import time
    from pathlib import Path
    from ..data import ensure_default_dataset
    from ..device import pick_device

    dev = pick_device(device)   # before the dataset: a missing CUDA device is one line, nothing fetched
    folder = ensure_default_dataset(verbose=True, data_dir=data_dir)
    out = out or str(Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    cc, protocol = demo_config(out, dev.type, mixers, epochs, subset, batch_size, seeds, data_dir, device=str(dev))
    note = (f"stratified {subset}-image subsets of the training and test sets" if subset else
            "all 60,000 training images, tested on the full 10,000-image test set")
    log(f"demo: Fashion-MNIST from {folder}; {note}")
    log(f"demo: {len(cc.mixers)} token mixers ({', '.join(cc.mixers)}) in compare's '{protocol.skeleton}' skeleton, "
        f"recipe '{protocol.recipe}', {protocol.epochs} epochs of batch {protocol.batch_size}, {seeds} seed(s), "
        f"on {dev}; compare directory {out}")
    return run_compare(cc, log=log, command=command), protocol, out
