"""Test-wide settings: one intra-op thread per process; where the real datasets are.

The suite's tensors are tiny, and several tests start subprocesses (torchrun workers, killed-and-resumed
training runs); on the 2-core CI machine more threads than cores only adds contention.

A test that needs a real dataset finds it as the CLI does (`mixlab.data.sources`: `$MIXLAB_DATA`, the cache
`$MIXLAB_CACHE` or `~/.cache/mixlab`, `/usr/share/datasets/fashion-mnist`) through `dataset_folder` and
`needs_dataset` below, and otherwise skips saying what is missing: a fresh clone with no variable set passes.
"""
import os
from pathlib import Path
from typing import Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from mixlab.data.sources import find_folder  # noqa: E402
from mixlab.data.spec import BUILTIN  # noqa: E402


def dataset_folder(name: str) -> Optional[Path]:
    """The folder the CLI would read built-in dataset `name` from (both splits present), or None."""
    train, _ = find_folder(name, "train")
    test, _ = find_folder(name, "test")
    return train if train is not None and test is not None else None


def needs_dataset(*names: str):
    """A skip marker unless every built-in dataset in `names` is found; the reason says how to get each."""
    missing = [n for n in names if dataset_folder(n) is None]
    reason = "; ".join(f"{n} not found in $MIXLAB_DATA, the cache or /usr/share/datasets "
                       f"({BUILTIN[n].how_to_get})" for n in missing)
    return pytest.mark.skipif(bool(missing), reason=reason or "found")


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


TINY_KWARGS = {"depth": 1, "embed_dim": 16, "mlp_hidden_dim": 32}
TINY_DATA = "synthetic:96x1x16x16:4"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished 1-epoch run of a tiny mixer_paper on synthetic data, trained once for the whole session
    (copy it before changing anything in it)."""
    from mixlab.train import TrainConfig, train
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(TrainConfig(model="mixer_paper", data=TINY_DATA, epochs=1, batch_size=32, device="cpu", out=str(out),
                      model_kwargs=dict(TINY_KWARGS)), log=None)
    return out
