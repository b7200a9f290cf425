"""Benchmark one model or a list: parameters, FLOPs, inference/training step time and throughput, peak memory.

Per model and input size, one row (a flat dict):
  params; flops_fwd / flops_fwd_bwd per image (see flops.py for the convention) and flops_fwd_<category>;
  infer_step_ms / infer_throughput (images/s, eval mode, no grad); train_step_ms / train_throughput
  (train mode: forward, cross-entropy, backward, Adam step — the optimiser of the NiNformer/Activator code);
  infer_memory_mb / train_memory_mb (peak live tensor bytes, see memory.py).
Options: device, batch size, precision (fp32, or bf16 autocast with fp32 weights), channels-last, torch.compile.
FLOPs are always counted on the uncompiled model in fp32 at batch 1 (FLOPs do not depend on those options).
With peers, each mixlab row also gets `peer` and `ratio_<figure>` = mixlab / timm (peers.py).
"""
import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .flops import model_flops
from .memory import peak_memory, tensor_bytes
from .peers import create_peer, peer_config
from .timing import time_step

# CPU defaults keep a 3-model run under a minute on 2 busy cores; pass larger values for steadier figures.
# One intra-op thread on CPU by default, a per-core cost: on a shared machine OpenMP threads that spin-wait for
# each other made steps 4-5x slower and far noisier than one thread (measured under load 8 on 2 cores). On an
# idle machine two threads are 1.3-1.6x faster, which is why training uses every core (docs/BENCHMARKS.md).
DEFAULTS = {"cpu": dict(batch_size=8, warmup=2, repeats=3, inner=1, threads=1),
            "cuda": dict(batch_size=256, warmup=10, repeats=20, inner=5, threads=None)}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
RATIO_KEYS = ("params", "flops_fwd", "flops_fwd_bwd", "infer_throughput", "train_throughput",
              "infer_memory_mb", "train_memory_mb")


@dataclass
class BenchConfig:
    device: str = "cpu"
    batch_size: int = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = None
    repeats: int = None
    inner: int = None
    img_size: int = None        # None: each model's native size
    in_chans: int = None
    num_classes: int = None
    threads: int = None         # torch intra-op threads while measuring (CPU default 1)
    train: bool = True
    memory: bool = True
    seed: int = 0

    def resolved(self):
        """A copy with device-dependent defaults filled in, after validating every option."""
        dev = torch.device(self.device)
        if dev.type not in DEFAULTS:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} was asked for but no CUDA device is available; use --device cpu")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        cfg = BenchConfig(**self.__dict__)
        for key, value in DEFAULTS[dev.type].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {cfg.batch_size}")
        if cfg.threads is not None and cfg.threads < 1:
            raise ValueError(f"threads must be >= 1, got {cfg.threads}")
        return cfg


@contextlib.contextmanager
def intra_op_threads(n):
    """Run with `torch.set_num_threads(n)` (None: leave as is), restoring the previous count after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _autocast(cfg):
    dtype = PRECISIONS[cfg.precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=dtype)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def _patch_embed(model):
    return getattr(model, "patch_embed", None) or getattr(model, "stem", None)


def _input_size(model):
    pe = _patch_embed(model)
    size = getattr(model, "img_size", None) or getattr(pe, "img_size", None)
    if isinstance(size, (tuple, list)):
        size = size[-1]
    if size is None:
        raise ValueError(f"cannot tell the input size of {type(model).__name__}; pass input_size=(C, S)")
    return getattr(model, "in_chans", 3), int(size)


def _tokens(model):
    n = getattr(_patch_embed(model), "num_patches", None)
    return int(n) if n is not None else None


def _num_classes(model):
    return getattr(model, "num_classes", 10) or 10


def bench_module(model, name, cfg, family=None, input_size=None):
    """Measure one built model under a resolved BenchConfig; returns the row (see the module docstring).
    `input_size=(C, S)` for models that do not expose `in_chans` / `img_size`."""
    with intra_op_threads(cfg.threads):
        return _bench_module(model, name, cfg, family, input_size)


def _bench_module(model, name, cfg, family, input_size):
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    in_chans, img_size = input_size or _input_size(model)
    model = model.to(device)
    row = {"model": name, "family": family, "img_size": img_size, "tokens": _tokens(model),
           "batch_size": cfg.batch_size, "device": device.type, "precision": cfg.precision,
           "channels_last": cfg.channels_last, "compile": cfg.compile, "threads": torch.get_num_threads(),
           "params": count_params(model)}
    fwd = model_flops(model, (in_chans, img_size, img_size), device=device)
    row["flops_fwd"] = fwd.total
    row.update({f"flops_fwd_{k}": v for k, v in fwd.breakdown.items()})
    row["flops_fwd_bwd"] = model_flops(model, (in_chans, img_size, img_size), device=device, backward=True).total

    x = torch.randn(cfg.batch_size, in_chans, img_size, img_size, device=device)
    y = torch.randint(0, _num_classes(model), (cfg.batch_size,), device=device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    runner = torch.compile(model) if cfg.compile else model
    timing = dict(warmup=cfg.warmup, repeats=cfg.repeats, inner=cfg.inner)

    def infer():
        with torch.no_grad(), _autocast(cfg):
            runner(x)

    model.eval()
    t = time_step(infer, device, **timing)
    row.update(infer_step_ms=1e3 * t["median"], infer_throughput=cfg.batch_size / t["median"],
               infer_first_call_s=t["first_call"])
    if cfg.memory:
        row["infer_memory_mb"] = peak_memory(infer, device, tensor_bytes(model, x)) / 2**20

    if cfg.train:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train():
            opt.zero_grad(set_to_none=True)
            with _autocast(cfg):
                loss = F.cross_entropy(runner(x), y)
            loss.backward()
            opt.step()

        t = time_step(train, device, **timing)
        row.update(train_step_ms=1e3 * t["median"], train_throughput=cfg.batch_size / t["median"],
                   train_first_call_s=t["first_call"])
        if cfg.memory:
            # Free the gradients before the measured step: the CPU profiler cannot see frees of blocks
            # allocated before it started, so they must not be resident; the step re-creates them.
            opt.zero_grad(set_to_none=True)
            row["train_memory_mb"] = peak_memory(train, device, tensor_bytes(model, opt, x, y)) / 2**20
    row["status"] = "ok"
    return row


def _is_oom(err):
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class DenoiserStep(nn.Module):
    """A denoiser ε̂ = f(x, t) (the diffusion UNets) as a one-input module for the measurements above:
    x ↦ f(x, t_mid) flattened to [B, C·H·W], so the training step's loss has the batch-first 2-D shape it
    expects. A UNet's cost does not depend on t (mid-schedule here), and the loss is negligible beside it."""

    def __init__(self, model, timestep=500):
        super().__init__()
        self.model, self.timestep = model, timestep
        self.in_chans, self.img_size, self.num_classes = model.in_chans, model.img_size, 0

    def forward(self, x):
        t = torch.full((x.shape[0],), self.timestep, device=x.device)
        return self.model(x, t).flatten(1)


def bench_model(name, cfg, img_size=None):
    """Build the registered model `name` (at `img_size`, else cfg.img_size, else native) and measure it.
    A denoiser (registered task 'diffusion') is measured through `DenoiserStep`.

    A CUDA out-of-memory error gives a row with status 'oom' instead of an exception.
    """
    from .. import create_model, model_cfg
    size = img_size or cfg.img_size
    denoiser = model_cfg(name).get("task") == "diffusion"
    model = create_model(name, img_size=size, in_chans=cfg.in_chans, num_classes=0 if denoiser else cfg.num_classes)
    if denoiser:
        model = DenoiserStep(model)
    try:
        return bench_module(model, name, cfg, family=model_cfg(name).get("family"),
                            input_size=(model.in_chans, model.img_size) if denoiser else None)
    except RuntimeError as err:
        if not _is_oom(err):
            raise
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"model": name, "family": model_cfg(name).get("family"), "img_size": size,
                "batch_size": cfg.batch_size, "device": cfg.device, "status": "oom"}


def add_ratios(row, peer_row):
    """row[ratio_<k>] = row[k] / peer_row[k] for the figures both rows have."""
    row["peer"] = peer_row["model"]
    for key in RATIO_KEYS:
        a, b = row.get(key), peer_row.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b and math.isfinite(b):
            row[f"ratio_{key}"] = a / b


def run_bench(names, cfg, peers=True, progress=None):
    """Benchmark registered models `names`; with `peers`, also their timm peers (each distinct config once)
    and the ratios. Returns the rows, mixlab models first, then peers. `progress(msg)` is told each step."""
    from .. import create_model, model_cfg
    if not names:
        raise ValueError("no model given; `mixlab models` lists them")
    cfg = cfg.resolved()
    say = progress or (lambda msg: None)
    rows, peer_rows, pairs = [], {}, []
    for name in names:
        say(f"bench {name}")
        row = bench_model(name, cfg)
        rows.append(row)
        if peers and row["status"] == "ok" and model_cfg(name).get("task") != "diffusion":   # no timm peer
            pc = peer_config(create_model(name, img_size=cfg.img_size, in_chans=cfg.in_chans,
                                          num_classes=cfg.num_classes))
            if pc is not None:
                pairs.append((row, pc))
    for row, pc in pairs:
        if pc not in peer_rows:
            say(f"bench {pc.name} (timm peer)")
            peer_rows[pc] = bench_module(create_peer(pc), pc.name, cfg, family=f"timm_{pc.kind}",
                                         input_size=(pc.in_chans, pc.img_size))
        add_ratios(row, peer_rows[pc])
    return rows + list(peer_rows.values())
