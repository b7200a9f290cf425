"""Files that are whole or absent: the one atomic writer (temp file + rename) for JSON, text, arrays, weights
and PNG plots, and the one-line errors for the ways a write can fail.

A process killed at any instant must never leave half a file behind, so every writer in mixlab goes
through `atomic_write`. Its temp files are named `.<name>.mixlab-tmp-<random><suffix>` beside the target, so
a later `clean_temp_files(folder)` can remove what a killed writer left. Files get the mode the umask
allows (0666 & ~umask), like any file `open()` creates, not mkstemp's private 0600. Imports nothing from the
rest of mixlab, so data, train and bench can all use it.
"""
import errno
import glob
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

TEMP_MARK = ".mixlab-tmp-"


class WriteError(OSError):
    """A file could not be written (disk full, read-only file system, a file where a folder should be, …).
    The message is one line that names the path and the reason."""


def first_line(error: BaseException | str, default: str | None = None, limit: int | None = None) -> str:
    """The first non-empty line of an error's message, stripped: what a one-line error shows of another error
    (tracebacks, exporter graphs and pickling details follow on later lines). An empty message gives `default`,
    or the exception's type name when none is given; `limit` cuts the line to that many characters."""
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else (type(error).__name__ if default is None else default)
    return line[:limit] if limit else line


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(err):
    """A short human reason for an exception raised while writing."""
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if code == errno.EROFS:
        return "read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.ENOTDIR:
        return "a path component is a file, not a folder"
    if code == errno.EISDIR:
        return "it is a folder"
    if code == errno.EFBIG:
        return "file too large for this file system"
    return first_line(err, limit=200)


def _disk_full(folder):
    """Whether the file system holding `folder` has no room left (libraries such as safetensors and
    torch.save's zip writer report a full disk as their own errors, without errno)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def ensure_folder(folder):
    """Create `folder` (and parents) or raise a one-line WriteError saying why it cannot be."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    if folder.exists():
        raise WriteError(errno.EEXIST, f"cannot write into {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(getattr(e, "errno", None) or errno.EIO,
                         f"cannot create folder {folder}: {_reason(e)}") from None
    return folder


def safe_name(name, what):
    """`name` as one path component under a root the caller chose, or a one-line ValueError: a user value
    (a sweep grid value, a recipe's name) must never lead a write outside that root."""
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text or \
            (os.altsep and os.altsep in text):
        raise ValueError(f"{what} {text!r} cannot name a folder (it must not be empty, '.', '..' or hold a "
                         f"path separator)")
    return text


def check_writable(path):
    """Fail now, in one line, if `path` could not be written later (a long job should not find out at its
    end). Creates the parent folder as a side effect."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(errno.EISDIR, f"cannot write {path}: it is a folder")
    folder = ensure_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}{TEMP_MARK}")
    except OSError as e:
        raise WriteError(getattr(e, "errno", None) or errno.EIO, f"cannot write {path}: {_reason(e)}") from None
    os.close(fd)
    os.unlink(tmp)


def atomic_write(path, write_fn, suffix=""):
    """Write through `write_fn(tmp_path)` then rename onto `path`, so a crash never leaves a half-written
    file and a failed write never replaces a good one. Any failure is a one-line `WriteError`."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(errno.EISDIR, f"cannot write {path}: it is a folder")
    folder = ensure_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}{TEMP_MARK}", suffix=suffix)
    except OSError as e:
        raise WriteError(getattr(e, "errno", None) or errno.EIO, f"cannot write {path}: {_reason(e)}") from None
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_umask())   # after writing: some writers (safetensors) replace the file
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        reason = "disk full" if _disk_full(folder) else _reason(e)
        raise WriteError(getattr(e, "errno", None) or errno.EIO, f"cannot write {path}: {reason}") from None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: it exists, under another user
        return True
    return True


def clean_temp_files(folder, name=None, keep_live=False):
    """Remove the temp files killed writers left in `folder` (only those of target `name` when given: the
    caller may hold no lock on the folder, only on its own target); returns how many were removed.

    keep_live: for writers that hold no lock, whose temp names start with their PID
    (`.<name>.mixlab-tmp-<pid>-…`): a temp file of a process still running is kept (it is being written)."""
    removed = 0
    for p in Path(folder).glob(f".{glob.escape(name)}{TEMP_MARK}*" if name else f".*{TEMP_MARK}*"):
        if keep_live:
            pid = p.name.partition(TEMP_MARK)[2].partition("-")[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def finite_json(obj):
    """`obj` with every NaN/inf float replaced by None, so the JSON written is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def read_json(path, kind=dict):
    """The JSON in file `path`, which must hold a `kind` (dict or list), or a one-line ValueError naming the
    file: not a regular file (a named pipe would block the read), unreadable, not JSON, nested too deeply."""
    import stat
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError(f"{path} is not a regular file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} cannot be read: {_reason(e)}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path} is not a mixlab file (its JSON is nested too deeply)") from None
    if kind is not None and not isinstance(value, kind):
        raise ValueError(f"{path} must hold a JSON {'object' if kind is dict else kind.__name__}, got "
                         f"{type(value).__name__}")
    return value


def write_json(path, obj):
    """Valid JSON (NaN/inf become null), written atomically."""
    text = json.dumps(finite_json(obj), indent=2, default=str, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_text(path, text):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (plots are files; there may be no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=100):
    """Write `fig` as a PNG atomically and release it; returns the path as a string."""
    import matplotlib.pyplot as plt
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".png")
    finally:
        plt.close(fig)
    return str(path)


def file_sha256(path):
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
