"""Numerical precision of a run, a recipe key (`precision`): auto | fp32 | bf16 | fp16.

fp32   true float32: TF32 tensor-core matmuls and convolutions are switched off, as the official code of
       the papers ran (it predates TF32 defaults); the `paper` and `dianet` recipes use it.
bf16   autocast to bfloat16 for matmuls/convs (CUDA, and CPUs with native bf16), float32 weights and
       optimiser; no loss scaling is needed (bf16 has float32's exponent range).
fp16   autocast to float16 with a dynamic gradient scaler (`torch.amp.GradScaler`), as fp16's narrow
       exponent range underflows small gradients otherwise.
auto   bf16 on CUDA, fp32 on a CPU: on the 2-core AVX512-BF16 machine bf16 autocast made training slower for
       every model measured, 0.6-0.9x of fp32 (docs/BENCHMARKS.md, "Training on CPUs"). A run records the
       precision it resolved to, so a resume and `mixlab eval` use the same.
Evaluation runs at the run's precision, so the reported accuracy is that of the numbers trained.
"""
import contextlib

import torch

from .recipes import PRECISIONS

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name, device):
    """'auto' → 'bf16' on CUDA, 'fp32' elsewhere; any other name as given."""
    if name == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return name


class Precision:
    def __init__(self, name, device):
        if name not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
        name = resolve_precision(name, device)
        self.name, self.device = name, torch.device(device)
        self.dtype = _DTYPES[name]

    def apply_global_settings(self):
        """TF32 off for fp32 runs (it is on by default for cuDNN convolutions); left alone otherwise."""
        if self.name == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self):
        """A GradScaler for fp16, None otherwise."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def describe(self):
        if self.name == "fp32":
            return "fp32 (TF32 off)"
        return f"{self.name} autocast" + (" + gradient scaler" if self.name == "fp16" else "")
