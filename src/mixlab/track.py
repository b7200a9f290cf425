"""Experiment trackers fed from the run directory: TensorBoard, MLflow and Weights & Biases (`--log a,b`).

The run directory stays the source of truth. After every committed epoch `Trackers.sync` sends what the
trainer state holds and the trackers have not yet seen: the loss and learning rate of every step (at the
global step s = 1…N, as steps.csv numbers them) and the epoch's metrics (`epoch/<column>`, at the epoch's
last step). `trackers.json` in the run directory records each tracker's run id and the epochs it has been
sent, so a resumed run continues the same tracker run with no step sent twice, and a tracker added on resume
first receives the epochs already trained. At the start each tracker gets the resolved config and recipe as
hyper-parameters; at the end curves.png and summary.json.

TensorBoard writes RUN/tensorboard/ (a resumed writer sets purge_step, so events of a killed process past the
last recorded epoch are discarded by TensorBoard's reader); MLflow uses MLflow's tracking URI
(MLFLOW_TRACKING_URI, else MLflow's default), experiment MLFLOW_EXPERIMENT_NAME or "mixlab"; W&B writes
RUN/wandb/, project WANDB_PROJECT or "mixlab", offline unless WANDB_MODE says otherwise or an API key is set.
"""
import importlib.util
import json
import os
import secrets
import time
from pathlib import Path

from .fileio import read_json

RECORD = "trackers.json"
# tracker -> (module that must import, pip package)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
            "wandb": ("wandb", "wandb")}


def parse_trackers(text):
    """'tensorboard,mlflow' -> ('tensorboard', 'mlflow'): known names, each installed, or a one-line ValueError
    naming the pip install."""
    names = tuple(dict.fromkeys(t.strip().lower() for t in str(text or "").split(",") if t.strip()))
    check_trackers(names)
    return names


def check_trackers(names):
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"trackers must be a list of names ({', '.join(TRACKERS)}), got {names!r}")
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)} (comma-separated)")
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"--log {name} needs {package}, which is not installed: pip install 'mixlab[track]' "
                             f"(or pip install {package})")


def _flat(obj, prefix=""):
    """Nested config as {"recipe.lr": 0.001, …} with scalar values (lists and None as JSON text)."""
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def _numbers(d):
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _TensorBoard:
    def __init__(self, rundir, record, config, resumed_step):
        from torch.utils.tensorboard import SummaryWriter
        self.logdir = rundir / "tensorboard"
        # purge_step: TensorBoard drops events at or after it that an earlier (killed) writer left behind
        self.writer = SummaryWriter(str(self.logdir), purge_step=resumed_step + 1 if record else None)
        if not record:
            from torch.utils.tensorboard.summary import hparams
            params = {k: v for k, v in _flat(config).items() if len(str(v)) < 1000}
            for summary in hparams(params, {"epoch/test_top1": 0.0, "epoch/test_loss": 0.0}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
        self.record = {"logdir": str(self.logdir)}

    def log(self, steps):
        for step, values in steps:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, rundir, summary, step, ok):
        curves = rundir / "curves.png"
        if ok and curves.is_file():
            import numpy as np
            from PIL import Image
            self.writer.add_image("curves", np.asarray(Image.open(curves).convert("RGB")), step, dataformats="HWC")
        if ok:
            self.writer.add_text("summary", "```\n" + json.dumps(summary, indent=2) + "\n```", step)
        self.writer.close()


class _MLflow:
    def __init__(self, rundir, record, config, resumed_step):
        import mlflow
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        uri = (record or {}).get("tracking_uri") or mlflow.get_tracking_uri()
        self.client = client = MlflowClient(tracking_uri=uri)
        if record:
            self.run_id = record["run_id"]
            client.update_run(self.run_id, status="RUNNING")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "mixlab")
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else client.create_experiment(name)
            self.run_id = client.create_run(exp_id, run_name=rundir.name,
                                            tags={"mixlab.run_dir": str(rundir.resolve())}).info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in _flat(config).items()]
            for i in range(0, len(params), 100):   # MLflow takes at most 100 params a batch
                client.log_batch(self.run_id, params=params[i:i + 100])
            client.log_dict(self.run_id, config, "config.json")
        self.record = {"tracking_uri": uri, "run_id": self.run_id}

    def log(self, steps):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for step, values in steps for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def finish(self, rundir, summary, step, ok):
        if ok:
            if (rundir / "curves.png").is_file():
                self.client.log_artifact(self.run_id, str(rundir / "curves.png"))
            self.client.log_dict(self.run_id, summary, "summary.json")
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class _WandB:
    def __init__(self, rundir, record, config, resumed_step):
        import wandb
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        run_id = (record or {}).get("id") or secrets.token_hex(4)   # W&B ids: 8 lowercase characters
        self.wandb = wandb
        self.run = wandb.init(id=run_id, resume="allow", mode=mode, dir=str(rundir),
                              project=os.environ.get("WANDB_PROJECT", "mixlab"), name=rundir.name, config=config,
                              settings=wandb.Settings(silent=True, console="off"))
        self.record = {"id": run_id, "project": self.run.project, "mode": mode, "dir": str(rundir / "wandb")}

    def log(self, steps):
        for step, values in steps:
            self.run.log(values, step=step)

    def finish(self, rundir, summary, step, ok):
        if ok:
            self.run.summary.update({f"summary/{k}": v for k, v in summary.items()
                                     if isinstance(v, (bool, int, float, str))})
            if (rundir / "curves.png").is_file():
                self.run.summary["curves"] = self.wandb.Image(str(rundir / "curves.png"))
        self.run.finish(exit_code=0 if ok else 1)


_SINKS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


class Trackers:
    """The trackers of one run (rank 0 only): `open`, then `sync` after each committed epoch, then `close`."""

    def __init__(self, rundir, names, config, history, log=print):
        self.rundir = Path(rundir)
        path = self.rundir / RECORD
        self.record = read_json(path) if path.exists() else {}   # one line naming a damaged record
        bad = [k for k, v in self.record.items() if not isinstance(v, dict)]
        if bad:
            raise ValueError(f"{path}: the record of tracker {bad[0]!r} must be a JSON object; was the file edited?")
        self.sinks = {}
        steps_per_epoch = _steps_per_epoch(history)
        for name in names:
            had = self.record.get(name)
            start = had.get("epochs", 0) * steps_per_epoch if had else 0
            sink = _SINKS[name](self.rundir, had, config, start)
            self.record[name] = dict(had or {}, **sink.record, epochs=(had or {}).get("epochs", 0))
            self.sinks[name] = sink
        self._write()
        log(f"tracking with {', '.join(names)} (record: {path})")

    def _write(self):
        from .fileio import write_json
        write_json(self.rundir / RECORD, self.record)

    def sync(self, history):
        """Send every committed epoch a tracker has not been sent: its steps, then its metrics."""
        rows, n = history["rows"], _steps_per_epoch(history)
        for name, sink in self.sinks.items():
            done = self.record[name]["epochs"]
            if done >= len(rows):
                continue
            steps = []
            for row in rows[done:]:
                e = int(row["epoch"])
                for s in range((e - 1) * n, e * n):
                    steps.append((s + 1, {"train/loss": history["step_loss"][s], "train/lr": history["step_lr"][s]}))
                steps[-1][1].update({f"epoch/{k}": v for k, v in _numbers(row).items()})
            sink.log(steps)
            self.record[name]["epochs"] = len(rows)
            self._write()

    def close(self, summary=None, history=None, ok=False):
        step = len(history["step_loss"]) if history else 0
        for sink in self.sinks.values():
            sink.finish(self.rundir, summary or {}, step, ok)
        self.sinks = {}


def _steps_per_epoch(history):
    rows = history["rows"]
    return len(history["step_loss"]) // len(rows) if rows else 0
