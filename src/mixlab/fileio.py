"""Files that are whole or absent: atomic writes (temp file + rename) for JSON, arrays, weights and PNG plots.

A run killed at any instant must never leave half a file behind, so every writer in mixlab goes through
`atomic_write`. Imports nothing from the rest of mixlab, so data, train and bench can all use it.
"""
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write_fn, suffix=""):
    """Write through `write_fn(tmp_path)` then rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (plots are files; there may be no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=100):
    """Write `fig` as a PNG atomically and release it; returns the path as a string."""
    import matplotlib.pyplot as plt
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".png")
    plt.close(fig)
    return str(path)
