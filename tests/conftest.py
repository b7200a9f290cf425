"""Test-wide settings: one intra-op thread per process.

The suite's tensors are tiny, and several tests start subprocesses (torchrun workers, killed-and-resumed
training runs); on the 2-core CI machine more threads than cores only adds contention.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


class ShellPayload:
    """Unpickling this runs `touch marker` through os.system: the classic pickle payload that a checkpoint or
    dataset reader must never execute."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def shell_payload(tmp_path):
    """(payload, marker): pickling `payload` into a file that a safe reader must refuse; `marker` appears
    only if the payload ran."""
    marker = tmp_path / "pwned"
    return ShellPayload(marker), marker
