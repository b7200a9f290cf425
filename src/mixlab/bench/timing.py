"""Wall-clock timing of a step function: warm-up, then the median of repeats.

On CUDA each repeat is bracketed by CUDA events (recorded on the current stream, then synchronised), so the
time is the device's, not the launch queue's; on CPU `time.perf_counter` brackets it (CPU ops are
synchronous). A repeat runs `inner` steps and is divided by `inner`, which amortises event overhead for
millisecond-scale GPU steps.
"""
import statistics
import time

import torch


def time_step(step, device, warmup=2, repeats=5, inner=1):
    """Seconds per call of `step()`: dict with median, min, max, the list of repeats, and the first call's
    time (which includes `torch.compile` compilation and allocator warm-up)."""
    if warmup < 1 or repeats < 1 or inner < 1:
        raise ValueError(f"warmup, repeats and inner must be >= 1, got {warmup}, {repeats}, {inner}")
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    sync()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                step()
            times.append((time.perf_counter() - t0) / inner)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": times,
            "first_call": first}
