"""Peak memory of one step, in bytes of live tensors.

CUDA: the caching allocator's `max_memory_allocated` after `reset_peak_memory_stats` — the peak of bytes held
by live tensors during the step (cached-but-free blocks are not included), counting everything alive then:
parameters, gradients, optimizer state, inputs, activations and workspaces.

CPU: torch has no CPU allocator statistics, so the step runs once under `torch.profiler` with
`profile_memory=True`; every allocation and free through the c10 CPU allocator is an event with its byte
count. The peak of their running sum, in time order, is the step's transient peak; to it we add the bytes
of the tensors alive before the step (`resident_bytes`: parameters, buffers, gradients, optimizer state,
inputs), so the figure is comparable with the CUDA one. Memory that kernels obtain outside the c10
allocator (e.g. oneDNN scratchpads) is not seen, and the profiler run is not the timed run.
"""
import os

import torch

# Kineto (the profiler's backend) logs every start/stop and a failed GPU probe to stderr; that is noise in a
# bench table. Read when the profiler first starts, so setting it here is early enough.
os.environ.setdefault("KINETO_LOG_LEVEL", "99")

METHOD = {
    "cuda": "torch.cuda.max_memory_allocated over one step (peak live tensor bytes)",
    "cpu": "torch.profiler(profile_memory=True): resident tensor bytes + peak running sum of c10 CPU "
           "allocations − frees over one step",
}


def tensor_bytes(*objs):
    """Bytes of the distinct storages reachable from tensors, modules (params, grads, buffers) and
    optimizers (state), each storage counted once."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            key = (s.data_ptr(), s.device)
            if key not in seen and s.nbytes():
                seen.add(key)
                total += s.nbytes()

    for obj in objs:
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                add(p)
                add(p.grad)
            for b in obj.buffers():
                add(b)
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                for v in state.values():
                    add(v)
        else:
            add(obj)
    return total


def _profiled_peak(step):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort()
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def peak_memory(step, device, resident_bytes=0):
    """Peak bytes of live tensors while `step()` runs on `device` (see the module docstring for the method)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    if device.type != "cpu":
        raise ValueError(f"peak memory is measured on 'cpu' or 'cuda', not {device.type!r}")
    return int(resident_bytes + _profiled_peak(step))
