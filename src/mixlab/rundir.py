"""`RunDir`: the one owner of a run directory — its layout, its lock, its writes, and reading it back.

    config.json        what the run is: model, its kwargs, input size, classes, normalisation, the asked
                       training config ("train") and the resolved recipe ("recipe")
    trainer_state.pt   the commit point of an epoch: everything a resume needs (read with weights_only)
    last.safetensors / best.safetensors, metrics.csv, steps.csv, summary.json, curves.png: derived files
                       (best: the epoch with the best score on the evaluation split, which is the test
                       split unless the run held out a validation split; `default_weights` says which of
                       the two a user gets when naming none)
    .mixlab.lock       held (flock) by the process writing the run, for the whole run; removed at its end

Status: `missing` (no folder), `empty` (a folder with nothing of ours or anyone's), `partial` (a mixlab run
that has not finished), `finished` (summary.json says completed, for the model config.json names) and
`foreign` (files that are not a mixlab run). Training refuses to write into a finished, partial or foreign
directory unless asked to resume or to overwrite; overwriting removes exactly the run's own files first, so
a run killed right after never leaves one model's config beside another's weights.

Every problem reading a run is a one-line `RunError` naming the file.
"""
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .fileio import WriteError, atomic_write, clean_temp_files, ensure_folder, first_line, write_json, write_text

CONFIG, SUMMARY, STATE = "config.json", "summary.json", "trainer_state.pt"
METRICS, STEPS, CURVES = "metrics.csv", "steps.csv", "curves.png"
LAST, BEST = "last.safetensors", "best.safetensors"
LOCK = ".mixlab.lock"
# A folder that training did not write (mixlab.save, a hub folder) has no evaluation split: its files by name.
SAVED_WEIGHTS = (BEST, LAST, "model.safetensors")
# Everything a run writes; --overwrite removes exactly these (never anything else in the folder).
RUN_FILES = (CONFIG, SUMMARY, STATE, METRICS, STEPS, CURVES, LAST, BEST, "samples", "trackers.json", "tensorboard",
             "wandb")
STATE_KEYS = ("epoch", "model", "optimizer", "rng", "history")


class RunError(ValueError):
    """A run directory that cannot be used as asked (one line, naming the directory or file)."""


class RunBusy(RunError):
    """Another process holds the run directory's lock."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd = None
        self._created = False

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # --- what is there --------------------------------------------------------------------------------
    def _entries(self):
        """Names in the folder that are not our lock or a killed writer's temp file."""
        if not self.path.is_dir():
            return []
        return [p.name for p in self.path.iterdir() if p.name != LOCK and ".mixlab-tmp-" not in p.name]

    def status(self) -> str:
        """missing | empty | partial | finished | foreign (see the module docstring)."""
        if not self.path.exists():
            return "missing"
        if not self.path.is_dir():
            return "foreign"
        entries = self._entries()
        if not entries:
            return "empty"
        if CONFIG not in entries:
            return "partial" if set(entries) <= set(RUN_FILES) else "foreign"
        try:
            config = self.read_config()
        except RunError:   # a run whose config.json was damaged: still ours, never overwritten silently
            return "partial"
        summary = self.read_summary(missing_ok=True, strict=False)
        if summary and summary.get("completed") is True and summary.get("model") == config["model"]:
            return "finished"
        return "partial"

    def epochs_done(self) -> int:
        """Epochs the run's files say were completed (trainer state, else metrics.csv rows)."""
        if (self / STATE).is_file():
            try:
                return int(self.read_state()["epoch"])
            except RunError:
                pass
        metrics = self / METRICS
        if metrics.is_file():
            try:
                return max(0, len(metrics.read_text().strip().splitlines()) - 1)
            except OSError:
                return 0
        return 0

    def describe(self) -> str:
        """One line for messages: what this directory holds."""
        status = self.status()
        if status in ("missing", "empty"):
            return f"{self.path} is {status}"
        if status == "foreign":
            names = sorted(self._entries())
            shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
            return f"{self.path} holds files that are not a mixlab run ({shown})"
        try:
            config = self.read_config()
            what = f"{config['model']}" + (f" on {config.get('dataset')}" if config.get("dataset") else "")
        except RunError as e:
            what = f"unknown model ({e})"
        if status == "finished":
            summary = self.read_summary(strict=False) or {}
            top1 = summary.get("test_top1")
            score = f", test top-1 {top1:.2f}%" if isinstance(top1, (int, float)) else ""
            return f"{self.path} holds a finished run of {what} ({summary.get('epochs_done')} epochs{score})"
        return f"{self.path} holds an unfinished run of {what} ({self.epochs_done()} epoch(s) done)"

    # --- reading --------------------------------------------------------------------------------------
    def _read_json(self, name):
        path = self / name
        _check_regular(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise RunError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"{path} cannot be read: {first_line(e, limit=300)}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RunError(f"{path} is not valid JSON ({e})") from None
        except RecursionError:   # thousands of nested brackets: no run writes that
            raise RunError(f"{path} is not a mixlab file (its JSON is nested too deeply)") from None

    def read_config(self, need: tuple[str, ...] = ()) -> dict:
        """config.json, checked for what rebuilds the model (and for the extra keys in `need`)."""
        if not self.path.is_dir():
            raise RunError(f"{self.path} is not a run directory" + ("" if self.path.exists() else
                                                                     " (it does not exist)"))
        _check_regular(self / CONFIG)
        if not (self / CONFIG).is_file():
            raise RunError(f"{self.path} is not a run directory (no {CONFIG})")
        config = self._read_json(CONFIG)
        where = self / CONFIG
        if not isinstance(config, dict):
            raise RunError(f"{where} must hold a JSON object, got {type(config).__name__}")
        if not isinstance(config.get("model"), str) or not config["model"]:
            raise RunError(f"{where}: 'model' must be a model name, got {config.get('model')!r}")
        if not isinstance(config.get("model_kwargs", {}), dict):
            raise RunError(f"{where}: 'model_kwargs' must be a JSON object of constructor arguments, got "
                           f"{type(config['model_kwargs']).__name__}")
        size = config.get("input_size")
        if size is not None and (not isinstance(size, list) or len(size) != 3 or
                                 not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise RunError(f"{where}: 'input_size' must be [C, H, W] positive integers, got {size!r}")
        for key in need:
            if key not in config:
                raise RunError(f"{where} has no {key!r}: " + _NEED_WHY.get(key, "it is needed here"))
        for key in ("mean", "std"):
            if key in need and not (isinstance(config[key], list) and config[key] and
                                    all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                                        math.isfinite(v) for v in config[key])):
                raise RunError(f"{where}: {key!r} must be a list of finite numbers, got {config[key]!r}")
        if "train" in need and not isinstance(config["train"], dict):
            raise RunError(f"{where}: 'train' must be a JSON object, got {type(config['train']).__name__}")
        return config

    def read_summary(self, missing_ok: bool = False, strict: bool = True) -> dict | None:
        """summary.json as a dict; None when absent and `missing_ok` (or unreadable and not `strict`)."""
        if not (self / SUMMARY).is_file():
            if missing_ok or not strict:
                return None
            raise RunError(f"{self.path} has no {SUMMARY}")
        try:
            summary = self._read_json(SUMMARY)
        except RunError:
            if strict:
                raise
            return None
        if not isinstance(summary, dict):
            if strict:
                raise RunError(f"{self / SUMMARY} must hold a JSON object")
            return None
        return summary

    def read_metrics(self) -> list[dict[str, float]]:
        """metrics.csv as one dict of floats per completed epoch (columns as the run's task wrote them)."""
        import csv
        _check_regular(self / METRICS)
        try:
            with open(self / METRICS, newline="") as f:
                return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        except (OSError, ValueError, TypeError, csv.Error) as e:   # a short row's missing cell is None
            raise RunError(f"{self / METRICS} is not readable as a metrics table: {first_line(e, limit=300)}") from None

    def read_state(self) -> dict:
        """trainer_state.pt through torch's weights-only unpickler: tensors and plain containers only."""
        import torch

        path = self / STATE
        if not path.is_file():
            raise RunError(f"{path} does not exist")
        if path.stat().st_size == 0:
            raise RunError(f"{path} is empty (a write was cut off); delete it to restart from scratch with "
                           f"--overwrite")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:   # random bytes, truncation, a pickle with code: all refused here
            raise RunError(f"{path} is not a mixlab trainer state ({first_line(e, limit=300)})") from None
        if not isinstance(state, dict):
            raise RunError(f"{path} is not a mixlab trainer state (it holds a {type(state).__name__})")
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise RunError(f"{path} is not a mixlab trainer state (missing {', '.join(missing)})")
        epoch, history = state["epoch"], state["history"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise RunError(f"{path} is damaged: its epoch is {epoch!r}, not a count of epochs")
        if not isinstance(history, dict) or not isinstance(history.get("rows"), list) or \
                not all(isinstance(r, dict) for r in history["rows"]):
            raise RunError(f"{path} is damaged: its history holds no list of epoch rows")
        return state

    # --- writing --------------------------------------------------------------------------------------
    @contextmanager
    def lock(self):
        """Hold the run's exclusive lock for the duration (another process gets a one-line RunBusy)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> "RunDir":
        if self._lock_fd is not None:
            return self
        self._created = not self.path.exists()
        ensure_folder(self.path)
        try:
            import fcntl
        except ImportError:   # no flock on this platform: run without the cross-process guard
            return self
        path = self / LOCK
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise WriteError(e.errno, f"cannot write into {self.path}: {first_line(e, limit=300)}") from None
            self._flock_or_refuse(fd, fcntl.LOCK_EX)
            try:   # the holder we waited for may have removed the file: our lock must be on the live one
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RunBusy(f"{self.path}: could not take its lock (the lock file keeps being replaced)")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._lock_fd = fd
        clean_temp_files(self.path)   # safe: nobody else writes here while we hold the lock
        return self

    def _flock_or_refuse(self, fd, mode):
        """flock(fd, mode) without waiting; held by another process: close fd and refuse with its holder."""
        import fcntl
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError:
            holder = _holder_text(fd)
            os.close(fd)
            raise self._busy(holder) from None

    def _busy(self, holder):
        """The one-line RunBusy for a lock another process holds (`holder`: the lock file's 'pid N since T')."""
        pid, _, since = holder.partition(" since ")
        who = f"PID {pid.split()[-1]}" if pid.startswith("pid ") and pid.split()[-1].isdigit() else \
            "another process (PID unknown)"
        return RunBusy(f"{self.path} is in use by {who} (a mixlab process writing it" +
                       (f" since {since}" if since else "") + "); wait for it to finish or choose another --out")

    def check_not_busy(self):
        """Raise the one-line RunBusy when another process holds this run's lock (a look that takes nothing:
        the table runners decide before their runs take the lock, and must not report or reuse a run that
        another process is writing)."""
        if self._lock_fd is not None or not (self / LOCK).is_file():
            return
        try:
            import fcntl
            fd = os.open(self / LOCK, os.O_RDONLY)
        except (ImportError, OSError):   # no flock here, or the holder just removed it: not in use
            return
        self._flock_or_refuse(fd, fcntl.LOCK_SH)
        os.close(fd)   # free: a lock file a killed process left (flock dies with its holder)

    def release(self) -> None:
        """Remove the lock file while still holding the lock, then drop it: the folder is left clean."""
        if self._lock_fd is not None:
            try:
                os.unlink(self / LOCK)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None
            if getattr(self, "_created", False):   # a run that failed before writing anything leaves no trace
                try:
                    self.path.rmdir()
                except OSError:
                    pass

    def clear(self) -> None:
        """Remove the run's own files (for --overwrite); anything else in the folder is left alone."""
        import shutil
        for name in RUN_FILES:
            p = self / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def write_json(self, name: str, obj: object) -> None:
        write_json(self / name, obj)

    def write_text(self, name: str, text: str) -> None:
        write_text(self / name, text)

    def write_weights(self, name: str, model) -> None:
        from safetensors.torch import save_model
        atomic_write(self / name, lambda tmp: save_model(model, tmp, force_contiguous=True), suffix=".safetensors")

    def write_state(self, state: dict) -> None:
        import torch
        atomic_write(self / STATE, lambda tmp: torch.save(state, tmp), suffix=".pt")


def validation_run(run_dir: str | Path) -> bool | None:
    """Whether a run's evaluation split was a validation split: True when config.json's `train` block records
    `validation` (N training images held out, `TrainConfig.validation`), False for any other training run
    (its evaluation split was the test split), None for a folder that training did not write (no readable
    config.json with a `train` block). Never raises: the readers report a damaged config.json themselves."""
    try:
        config = RunDir(run_dir)._read_json(CONFIG)
    except RunError:
        return None
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        return None
    return held_out_images(config) is not None


def held_out_images(config: dict) -> int | None:
    """N when a run's config.json (as a dict) records a validation split of N training images, else None."""
    n = (config.get("train") or {}).get("validation")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def default_weights(run_dir: str | Path) -> str:
    """The weights file a run's users get when they name none (eval, load, predict, export, report, hub).

    The rule (docs/EXPORT.md, "Which weights"): the test set never chooses anything, and best.safetensors is
    the epoch with the best score on the run's evaluation split. So:
        best.safetensors   when that split was a validation split (config.json: train.validation = N)
        last.safetensors   for every other training run (best was chosen on the test split)
    A folder that training did not write (no `train` block: `mixlab.save`, a hub folder) chose nothing on
    any split: its first file of best, last, model.safetensors that exists (best when none does, so the
    loader's error names what is missing)."""
    chosen_on = validation_run(run_dir)
    if chosen_on is not None:
        return BEST if chosen_on else LAST
    path = Path(run_dir)
    return next((name for name in SAVED_WEIGHTS if (path / name).exists()), BEST)


def weights_path(run_dir: str | Path, weights: str | None = None) -> Path:
    """The weights file of a run or saved folder: `weights` if named, else `default_weights`; a one-line
    FileNotFoundError when it is not there (saying when the default was not taken because the test split
    chose best.safetensors' epoch, and which other names a saved folder may use)."""
    directory = Path(run_dir)
    name = weights or default_weights(directory)
    path = directory / name
    if path.exists():
        return path
    note = ""
    if not weights and name == LAST and (directory / BEST).exists():   # never fall back: the test set chose it
        note = f" (its {BEST} was chosen on the test split: pass weights={BEST!r} to load it anyway)"
    elif not weights and validation_run(directory) is None:
        note = f" (nor {' or '.join(n for n in SAVED_WEIGHTS if n != name)})"
    raise FileNotFoundError(f"{directory} holds no {name}{note}")


def weights_label(run_dir: str | Path, name: str) -> str:
    """`name` for messages, saying so when it is the best epoch of a run whose evaluation split was the test
    split (a number from it was chosen by the test set and is no result)."""
    if Path(name).name == BEST and validation_run(run_dir) is False:
        return f"{name} (its epoch chosen on the test split)"
    return name


def _check_regular(path):
    """A one-line RunError when `path` exists but is no regular file: opening a named pipe blocks forever."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return   # missing or unreadable: the reader says so
    if not stat.S_ISREG(mode):
        raise RunError(f"{path} is not a regular file ({'a named pipe' if stat.S_ISFIFO(mode) else 'a folder' if stat.S_ISDIR(mode) else 'a special file'}); "
                       f"a run's files are plain files")


def _holder_text(fd):
    """What the lock's holder wrote into the lock file ('pid N since T'), or ''."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


_NEED_WHY = {
    "mean": "the images cannot be normalised as in training",
    "std": "the images cannot be normalised as in training",
    "train": "it does not record how the run was trained (was it written by `mixlab train`?)",
    "recipe": "it does not record the resolved recipe",
    "class_names": "the classes cannot be named",
}
