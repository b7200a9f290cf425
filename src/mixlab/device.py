"""The one place a device name becomes a `torch.device` (training, evaluation, demo, bench, prediction)."""
import torch


def pick_device(device="auto"):
    """'auto' → CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:1' as given, checked to exist."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device {device} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def cpu_has_native_bf16():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
