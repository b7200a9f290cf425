"""Test-wide settings: one intra-op thread per process.

The suite's tensors are tiny, and several tests start subprocesses (torchrun workers, killed-and-resumed
training runs); on the 2-core CI machine more threads than cores only adds contention.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
