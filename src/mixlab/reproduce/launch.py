"""Running many training runs at once: in this process one after another, in a local pool of worker
processes, or as tasks on a Ray cluster. Each run is an ordinary `train(TrainConfig)` writing its own run
directory, and the run directory is the single source of truth: a job looks at it when it starts (a partial
run is resumed through the engine), so a killed or interrupted fan-out resumes like a sequential table.


    Sequential()                    the default: identical to training the runs in a loop
    LocalPool(workers=K)            K spawned processes, each with a fixed slot: on GPUs the slots go round-robin
                                    over the visible devices (K > GPUs puts several runs on one GPU); on CPU
                                    the cores are split, each process getting ⌊threads / K⌋ intra-op threads
    RayLauncher(address, …)         each run a Ray task asking for 1/runs_per_gpu of a GPU (or cpus_per_run
                                    CPUs); `pip install 'mixlab[ray]'`

Determinism: a run's numbers depend only on its config and the intra-op thread count on CPU (a CPU matmul
may split its sums differently with more threads). So `--workers K` reproduces the sequential rows when each
run gets the same thread count as the sequential process (`threads_per_run`); GPU kernels may add their own
run-to-run nondeterminism, as in any sequential run.

A launcher's `map(jobs, on_start, on_done)` calls `on_start(key)` when a job is handed out and
`on_done(key, outcome)` when it ends; an outcome is ("ok", summary) or ("failed", one line).
"""
import inspect
import multiprocessing
import os
import sys
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import wait

from ..fileio import first_line

RAY_MISSING = "the Ray launcher needs Ray: pip install 'mixlab[ray]'"


def _default_train():
    from ..train import train
    return train


def attempt(train_fn, cfg, log=None):
    """Train one run and say how it ended: ("ok", summary) or ("failed", the error's first line).

    The run directory decides between a fresh start and a resume, at the moment the job runs: a directory a
    killed job left half-trained is continued, never refused or restarted.
    """
    from ..rundir import RunDir
    if cfg.resume is None and not cfg.overwrite and cfg.out and RunDir(cfg.out).status() == "partial":
        cfg.resume = cfg.out
    try:
        takes_log = log is not None and "log" in inspect.signature(train_fn).parameters
        return "ok", (train_fn(cfg, log=log) if takes_log else train_fn(cfg))
    except Exception as e:   # noqa: BLE001 (one broken run must not stop a day-long table; reported)
        kind = "" if isinstance(e, (RuntimeError, ValueError, FileNotFoundError)) else f"{type(e).__name__}: "
        return "failed", kind + first_line(e, "")


def _label(cfg):
    """How a worker's log lines name their run: the last three parts of its directory (dataset/model/seed)."""
    parts = os.path.normpath(str(cfg.out)).split(os.sep)
    return "/".join(parts[-3:])


class Sequential:
    """Every job in this process, in order (what `mixlab reproduce` always did)."""

    def __init__(self, train_fn=None, threads_per_run=None):
        self.train_fn, self.threads_per_run = train_fn, threads_per_run

    def describe(self):
        return "sequentially in this process"

    def map(self, jobs, on_start, on_done):
        from ..bench.run import intra_op_threads
        with intra_op_threads(self.threads_per_run):
            for key, cfg in jobs:
                on_start(key)
                on_done(key, attempt(self.train_fn or _default_train(), cfg))


class _NotATty:
    """The worker's stderr: everything passes, but progress bars see no terminal (K bars would garble it)."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _worker_main(conn, device, threads, train_fn):
    """A pool process: train the jobs it is sent on its slot (device, threads) until it gets None."""
    from ..data.files import die_with_parent
    die_with_parent()   # even a kill -9 of the pool takes its workers along: a rerun meets no orphan
    import torch
    torch.set_num_threads(threads)
    sys.stderr = _NotATty(sys.stderr)
    while True:
        message = conn.recv()
        if message is None:
            return
        key, cfg = message
        if device and cfg.device in (None, "auto", "cuda"):
            cfg.device = device
        label = _label(cfg)
        outcome = attempt(train_fn or _default_train(), cfg, log=lambda m: print(f"[{label}] {m}", flush=True))
        conn.send((key, outcome))


@contextmanager
def _thread_env(threads):
    """OMP/MKL_NUM_THREADS = threads for the processes started inside (restored after)."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(threads) for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pool_slots(workers, device="auto", threads=None):
    """[(device or None, intra-op threads)] for each pool process (module docstring)."""
    import torch
    if threads is None:
        threads = max(1, torch.get_num_threads() // workers)
    gpus = torch.cuda.device_count() if device not in ("cpu",) and torch.cuda.is_available() else 0
    if isinstance(device, str) and device.startswith("cuda:"):
        return [(device, threads)] * workers   # one named GPU: every run on it
    return [(f"cuda:{k % gpus}" if gpus else None, threads) for k in range(workers)]


class LocalPool:
    """K spawned worker processes on this machine (module docstring); a process that dies takes only its
    current job with it (reported as failed) and is replaced."""

    def __init__(self, workers, device="auto", threads_per_run=None, train_fn=None):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--workers must be a positive integer, got {workers!r}")
        self.workers, self.device, self.threads, self.train_fn = workers, device, threads_per_run, train_fn

    def describe(self):
        slots = pool_slots(self.workers, self.device, self.threads)
        where = ", ".join(sorted({d for d, _ in slots if d})) or "CPU"
        return f"{self.workers} worker processes on {where}, {slots[0][1]} thread(s) each"

    def map(self, jobs, on_start, on_done):
        ctx = multiprocessing.get_context("spawn")
        slots = pool_slots(self.workers, self.device, self.threads)[:max(1, len(jobs))]
        pending = deque(jobs)
        busy = {}          # slot -> key of the job it runs
        procs = [None] * len(slots)

        def start(slot):
            parent, child = ctx.Pipe()
            device, threads = slots[slot]
            proc = ctx.Process(target=_worker_main, args=(child, device, threads, self.train_fn), daemon=True)
            with _thread_env(threads):   # a spawned process reads its environment before torch starts
                proc.start()
            child.close()
            procs[slot] = (proc, parent)

        def hand_out(slot):
            if not pending:
                return
            if procs[slot] is None or not procs[slot][0].is_alive():
                start(slot)
            key, cfg = pending.popleft()
            busy[slot] = key
            on_start(key)
            procs[slot][1].send((key, cfg))

        try:
            for slot in range(len(slots)):
                hand_out(slot)
            while busy:
                waitables = {}
                for slot in busy:
                    proc, conn = procs[slot]
                    waitables[conn] = slot
                    waitables[proc.sentinel] = slot
                for ready in wait(list(waitables)):
                    slot = waitables[ready]
                    if slot not in busy:
                        continue
                    proc, conn = procs[slot]
                    try:
                        key, outcome = conn.recv() if conn.poll() else (None, None)
                    except (EOFError, OSError):
                        key = None
                    if key is None:
                        if proc.is_alive():
                            continue   # the sentinel fired before the pipe: wait for the result
                        proc.join()
                        key, outcome = busy[slot], ("failed", f"the worker process died (exit code {proc.exitcode})")
                        procs[slot] = None
                    del busy[slot]
                    on_done(key, outcome)
                    hand_out(slot)
        finally:
            for entry in procs:
                if entry is None:
                    continue
                proc, conn = entry
                try:
                    conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
            for entry in procs:
                if entry is not None:
                    entry[0].join(timeout=30)
                    if entry[0].is_alive():
                        entry[0].terminate()


def _ray_job(cfg, device, threads, train_fn):
    """One Ray task: a run on the share of the node Ray gave it (its GPU is cuda:0 of CUDA_VISIBLE_DEVICES)."""
    import torch
    torch.set_num_threads(threads)
    cfg.device = device
    label = _label(cfg)
    return attempt(train_fn or _default_train(), cfg, log=lambda m: print(f"[{label}] {m}", flush=True))


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


class RayLauncher:
    """Each run a task on a Ray cluster: `address` 'auto' (the cluster this node belongs to), HOST:PORT, or
    None for the cluster this process already joined (ray.init) or else a local one."""

    def __init__(self, address="auto", runs_per_gpu=1, cpus_per_run=1, device="auto", train_fn=None):
        if not isinstance(runs_per_gpu, int) or runs_per_gpu < 1:
            raise ValueError(f"--runs-per-gpu must be a positive integer, got {runs_per_gpu!r}")
        if not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise ValueError(f"--cpus-per-run must be a positive integer, got {cpus_per_run!r}")
        self.address, self.runs_per_gpu, self.cpus_per_run = address, runs_per_gpu, cpus_per_run
        self.device, self.train_fn = device, train_fn
        import_ray()   # fail before planning anything when Ray is absent

    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=True)
            except ConnectionError as e:
                raise ConnectionError(f"cannot reach the Ray cluster at {self.address}: {first_line(e)}") from None
        return ray

    def _shares(self, ray):
        gpus = ray.cluster_resources().get("GPU", 0) if self.device != "cpu" else 0
        if gpus:
            return {"num_gpus": 1 / self.runs_per_gpu, "num_cpus": self.cpus_per_run}, "cuda"
        return {"num_gpus": 0, "num_cpus": self.cpus_per_run}, "cpu"

    def describe(self):
        ray = self._connect()
        shares, device = self._shares(ray)
        what = f"1/{self.runs_per_gpu} GPU" if device == "cuda" else f"{self.cpus_per_run} CPU(s)"
        return f"Ray tasks on {ray.cluster_resources().get('CPU', 0):g} CPUs / " \
               f"{ray.cluster_resources().get('GPU', 0):g} GPUs, {what} per run"

    def map(self, jobs, on_start, on_done):
        ray = self._connect()
        shares, device = self._shares(ray)
        remote = ray.remote(max_retries=1, **shares)(_ray_job)
        refs = {}
        for key, cfg in jobs:
            on_start(key)
            refs[remote.remote(cfg, device, self.cpus_per_run, self.train_fn)] = key
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                key = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:   # noqa: BLE001 (a lost node or a crashed worker fails this run only)
                    outcome = ("failed", f"{type(e).__name__}: {first_line(e, '')}")
                on_done(key, outcome)


def make_launcher(workers=1, launcher="local", address=None, runs_per_gpu=1, cpus_per_run=1, device="auto",
                  threads_per_run=None, train_fn=None):
    """The launcher the CLI flags ask for (Sequential for one local worker)."""
    if launcher == "ray":
        return RayLauncher(address or "auto", runs_per_gpu, cpus_per_run, device, train_fn)
    if launcher != "local":
        raise ValueError(f"--launcher must be local or ray, got {launcher!r}")
    if address:
        raise ValueError("--address is for --launcher ray")
    if workers == 1:
        return Sequential(train_fn, threads_per_run)
    return LocalPool(workers, device, threads_per_run, train_fn)
