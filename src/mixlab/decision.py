"""The one owner of "what does this request mean for that run directory".

    decide(rundir, config) -> Decision(action, config, recipe, summary)

    action   new        nothing there yet (missing, empty, or a run killed before its first epoch): train
             resume     continue the run from its trainer state (config: the recorded one, with this call's
                        epochs, device and speed settings; recipe: the recorded resolved recipe)
             reuse      the run is finished and is the one asked for: `summary` is the answer, nothing trains
             overwrite  the user asked to replace what is there: remove the run's own files, then train
    anything else is refused with one line (`RunError`) saying what is there and what to pass instead.

Two kinds of request reach it:

* a *continuation* (`config.resume` set: `mixlab train --resume DIR`): only what the call sets is compared
  with what the run recorded (an unset field keeps the run's value), and more epochs extend a finished run;
* a *full request* (`config.out` only: `mixlab train --out`, every run of `reproduce`, `sweep`, `compare`):
  every field that changes the numbers is compared. Plain `train` refuses any existing run unless
  `--overwrite`; with `reuse=True` (the table runners) a finished identical run is reused and an unfinished
  identical one resumed, while a run of another request — other epochs, subset, seed, recipe values, model
  keywords — is refused, or with `overwrite` trained again. It is never reported as the answer.

`differences(asked, recorded)` is the single recorded-vs-asked comparison behind all of these.
"""
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .rundir import CONFIG, LAST, STATE, RunDir, RunError

if TYPE_CHECKING:   # the annotation of `Decision.config` only
    from .train.config import TrainConfig

ACTIONS = ("new", "resume", "reuse", "overwrite")


@dataclass
class Decision:
    action: str                  # one of ACTIONS
    config: "TrainConfig"        # the request to run (for resume: the recorded one, merged)
    recipe: dict | None = None   # resume: the run's recorded resolved recipe, which the continuation keeps
    summary: dict | None = None  # reuse: the finished run's summary.json
    note: str | None = None      # a line worth printing (why this action), or None

    @property
    def trains(self):
        return self.action != "reuse"


def _canon(value):
    """A value in one spelling for comparison (tuples as lists, keys sorted, 1 == 1.0)."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(float(value))
    if isinstance(value, list):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_canon(v)}" for k, v in sorted(value.items())) + "}"
    return json.dumps(str(value))


def _same(a, b):
    return _canon(a) == _canon(b)


def _recipe_value(key, value):
    """A recipe key's value as the recipe holds it (so --set lr=0 and a recorded 0.0 agree)."""
    from .train.recipes import Recipe, check_value, parse_value
    return check_value(Recipe.field_info(key), parse_value(value), "--set")


def _recipe_values(mapping):
    return {k: _recipe_value(k, v) for k, v in (mapping or {}).items()}


def asked_epochs(asked, recorded):
    """The number of epochs `asked` wants: its --epochs, else (full request) its recipe's, else the run's."""
    if asked.epochs is not None:
        return int(asked.epochs)
    if asked.resume:
        return (recorded.get("recipe") or {}).get("epochs")
    from .train.config import resolve
    recipe = resolve(asked)[0]
    # A step budget decides the epochs (the engine records ceil(max_steps / steps per epoch)); max_steps itself
    # is compared with the overrides, so the recipe's nominal epochs are no difference.
    return None if recipe.max_steps else recipe.epochs


def differences(asked, recorded):
    """[(field, recorded value, asked value)] where the request `asked` (a TrainConfig) is not the run that
    `recorded` (its config.json) describes. Epochs are included: whether more epochs may extend a run is
    the caller's policy, not a difference of the run.

    A continuation (`asked.resume`) compares only what it sets (None, {} , seed 0 and recipe 'auto' are
    unset), recipe values against the recorded resolved recipe. A full request compares every result field
    against the recorded request (`train`), as asked, so `--subset 64` is never another run's `--subset` unset.
    """
    train, recipe = recorded.get("train") or {}, recorded.get("recipe") or {}
    out = []

    def note(key, had, want):
        if not _same(had, want):
            out.append((key, had, want))

    if asked.resume:
        for key in ("model", "data", "subset", "validation", "model_kwargs"):
            want = getattr(asked, key)
            if want not in (None, {}):
                note(key, train.get(key), want)
        if asked.seed:   # 0 is the CLI's default: treated as unset
            note("seed", train.get("seed"), asked.seed)
        if asked.recipe not in (None, "auto") and asked.recipe not in (train.get("recipe"), recipe.get("name")):
            out.append(("recipe", recipe.get("name"), asked.recipe))
        values = dict(asked.overrides, **{k: getattr(asked, k) for k in ("lr", "batch_size")
                                          if getattr(asked, k) is not None})
        for key, value in values.items():
            note(key, recipe.get(key), _recipe_value(key, value))
    else:
        for key in ("model", "data", "subset", "validation", "seed", "model_kwargs", "batch_size", "lr"):
            note(key, train.get(key), getattr(asked, key))
        for key, default in (("task", "auto"), ("head", None), ("freeze_backbone", False)):   # runs recorded before --task ran as auto
            note(key, train.get(key, default), getattr(asked, key, default))
        if asked.recipe != train.get("recipe") and asked.recipe != recipe.get("name"):
            out.append(("recipe", train.get("recipe"), asked.recipe))
        note("overrides", _recipe_values(train.get("overrides")), _recipe_values(asked.overrides))
    want = asked_epochs(asked, recorded)
    if want is not None:
        note("epochs", recipe.get("epochs"), want)
    return out


def describe_differences(diffs):
    """'subset=None, not 64; epochs=1, not 2' for a message."""
    return "; ".join(f"{key}={had!r}, not {want!r}" for key, had, want in diffs)


def check_recorded_model(rundir, recorded):
    """config.json's model part must agree with its training part (a hand edit of one would be ignored)."""
    from .train.config import DATA_DECIDED
    train = recorded["train"]
    asked = train.get("model_kwargs") or {}
    recipe_rate = (recorded.get("recipe") or {}).get("drop_path_rate")
    built = {k: v for k, v in recorded.get("model_kwargs", {}).items() if k not in DATA_DECIDED and not
             (k == "drop_path_rate" and k not in asked and v == recipe_rate)}   # the recipe's stochastic depth
    if recorded["model"] != train.get("model") or not _same(built, asked):
        raise RunError(f"{rundir / CONFIG}: its model ({recorded['model']}, {json.dumps(built)}) disagrees with the "
                       f"model it was trained as ({train.get('model')}, {json.dumps(asked)}); was it edited?")


def merge_for_resume(saved, config):
    """The recorded training config with this call's epochs/device/compile/out/data_dir/data_workers."""
    from .train.config import TrainConfig
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    merged = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    merged.epochs = config.epochs if config.epochs is not None else saved.get("epochs")
    merged.device = config.device
    # --compile / --no-compile on the resume pin it from here; without either the run keeps what it had (an
    # auto run its recorded decision, see train.autocompile)
    merged.compile = config.compile if config.compile is not None else saved.get("compile")
    merged.out = config.out or config.resume
    merged.resume, merged.overwrite = config.resume or merged.out, False
    if config.data_dir:
        merged.data_dir = config.data_dir
    if config.data_workers is not None:   # how many processes decode changes no number, only speed
        merged.data_workers = config.data_workers
    if config.trackers:   # trackers change no number; without --log a resume feeds the ones the run had
        merged.trackers = tuple(config.trackers)
    return merged


def _unresumable(rundir):
    """Completed epochs without a trainer state: the run cannot continue exactly."""
    return not (rundir / STATE).is_file() and (rundir.epochs_done() > 0 or (rundir / LAST).exists())


def decide(rundir, config, log=None, reuse=False):
    """The `Decision` for training `config` into `rundir` (see the module docstring); a refusal raises a
    one-line RunError (FileNotFoundError for a --resume of nothing). Reads only; the caller holds the lock
    when it acts on the answer."""
    log = log or (lambda *_: None)
    rundir = rundir if isinstance(rundir, RunDir) else RunDir(rundir)
    if config.resume and config.out and Path(config.out).resolve() != Path(config.resume).resolve():
        raise RunError(f"--resume {config.resume} continues that run in place; --out must be the same directory "
                       f"or unset")
    rundir.check_not_busy()   # a run another process is writing is no answer and no starting point
    status = rundir.status()
    if config.resume:
        return _continuation(rundir, config, status, log)
    if status in ("missing", "empty"):
        return Decision("new", config)
    overwrite = Decision("overwrite", config, note=f"--overwrite: removing the previous run's files in {rundir.path}")
    if config.overwrite and not (reuse and status != "foreign"):
        return overwrite
    if status == "foreign":
        raise RunError(f"{rundir.describe()}; choose another --out (or --overwrite to write the run's files "
                       f"beside them)")
    if not reuse:
        hint = {"finished": "pass --overwrite to replace it, or --resume with more --epochs to extend it",
                "partial": f"continue it with --resume {rundir.path}, or pass --overwrite to replace it"}[status]
        raise RunError(f"{rundir.describe()}; {hint}")
    if not os.path.lexists(rundir / CONFIG):   # a run killed before it recorded itself
        return _continuation(rundir, dataclasses.replace(config, resume=str(rundir.path)), status, log)
    try:
        recorded = rundir.read_config(need=("train", "recipe"))
        check_recorded_model(rundir, recorded)
    except RunError:
        if config.overwrite:
            return overwrite
        raise
    diffs = differences(config, recorded)
    if diffs and config.overwrite:   # a run of another request is trained again, as asked
        return dataclasses.replace(overwrite, note=f"{rundir.path} held another run ({describe_differences(diffs)}); "
                                                   f"--overwrite: training it again")
    if diffs:
        raise RunError(f"{rundir.path} holds another run than the one asked ({describe_differences(diffs)}); "
                       f"pass --overwrite to train it again, or another --out")
    if status == "finished":
        return Decision("reuse", config, summary=rundir.read_summary())
    if not (rundir / STATE).is_file():
        if _unresumable(rundir):
            raise RunError(f"cannot resume {rundir.path}: it has completed epochs but no {STATE} (deleted?); pass "
                           f"--overwrite to train it again from scratch")
        # killed before its first epoch: the same run from scratch, which the engine does as a continuation
        return Decision("new", dataclasses.replace(config, resume=str(rundir.path)),
                        note=f"{rundir.path} holds no checkpoint yet; starting from scratch there")
    resumed = merge_for_resume(recorded["train"], dataclasses.replace(config, resume=str(rundir.path)))
    return Decision("resume", resumed, recipe=recorded["recipe"])


def _continuation(rundir, config, status, log):
    if status == "missing":
        raise FileNotFoundError(f"nothing to resume at {rundir.path}: it does not exist")
    if status == "foreign":
        raise RunError(f"cannot resume: {rundir.describe()}")
    if not os.path.lexists(rundir / CONFIG):
        if _unresumable(rundir):
            raise RunError(f"cannot resume {rundir.path}: it has completed epochs but no {STATE} (deleted?), so it "
                           f"cannot continue exactly; pass --overwrite to train it again from scratch")
        if not config.model:
            raise RunError(f"nothing to resume in {rundir.path}: it holds no run yet; give --model and --data to "
                           f"start one")
        log(f"{rundir.path} holds no checkpoint yet; starting from scratch there")
        return Decision("new", dataclasses.replace(config, resume=None, out=str(rundir.path)))
    recorded = rundir.read_config(need=("train", "recipe"))
    check_recorded_model(rundir, recorded)
    diffs = [d for d in differences(config, recorded) if d[0] != "epochs"]   # more epochs extend the run
    if diffs:
        key, had, want = diffs[0]
        raise RunError(f"cannot resume: the run was trained with {key}={had!r}, not {want!r}")
    merged = merge_for_resume(recorded["train"], config)
    if not (rundir / STATE).is_file():
        if _unresumable(rundir):
            raise RunError(f"cannot resume {rundir.path}: it has completed epochs but no {STATE} (deleted?), so it "
                           f"cannot continue exactly; pass --overwrite to train it again from scratch")
        log(f"{rundir.path} holds no checkpoint yet; starting from scratch there")
        merged.resume = None   # killed before its first epoch: the same run, from scratch
        return Decision("new", merged)
    summary = rundir.read_summary(missing_ok=True, strict=False)
    wanted = merged.epochs if merged.epochs is not None else recorded["recipe"].get("epochs")
    done = summary.get("epochs_done") if summary else None
    if status == "finished" and isinstance(done, int) and not isinstance(done, bool) and done >= (wanted or 0):
        log(f"{rundir.path} is already complete ({summary['epochs_done']} epochs); nothing to resume")
        return Decision("reuse", merged, summary=summary)
    return Decision("resume", merged, recipe=recorded["recipe"])
