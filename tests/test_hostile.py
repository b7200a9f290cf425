"""Issue 26 through the real `mixlab` entry point: stale sweep rows, the run directory's lock, names that would
escape their root, damaged run files, odd file-system objects and hostile names. Each bad input ends in a
non-zero exit, exactly one `mixlab …: error:` line on stderr, no traceback, and nothing written or lost.

One tiny finished run (conftest's session `tiny_run`) is copied wherever a run is needed; the one-line cases
run as concurrent subprocesses to keep CI time small.
"""
import json
import sys
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mixlab.decision import decide, differences
from mixlab.rundir import RunDir, RunError
from mixlab.train import TrainConfig
from conftest import dataset_folder, needs_dataset
from test_robustness import DATA, ENV, MIXLAB, TINY, assert_one_line_error, cli, snapshot, train_args


def tree(folder):
    """Every file under `folder` with its bytes (what 'nothing written or lost' compares)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sweep_args(out, *extra):
    return ["sweep", "--model", "mixer_paper", "--data", DATA, "--epochs", 1, "--batch-size", 32, "--device", "cpu",
            "--model-kwargs", json.dumps(TINY), "--model-grid", "depth=1", "--out", out, *extra]


@pytest.fixture
def swept(tiny_run, tmp_path):
    """A sweep folder whose one point (model.depth=1, seed 0) is the finished 1-epoch tiny run."""
    out = tmp_path / "sweep"
    shutil.copytree(tiny_run, out / "model.depth=1" / "seed0")
    return out


# --- one owner of the resume decision (decision.py) ----------------------------------------------------------
def test_a_sweep_reuses_only_the_run_it_was_asked_for(swept):
    point = swept / "model.depth=1" / "seed0"
    before = tree(point)
    same = cli(*sweep_args(swept))                                      # the same request: reused, nothing trains
    assert same.returncode == 0, same.stderr[-1500:]
    assert "| 1 | 0 |" in same.stdout and tree(point) == before
    # another request over the same folder must never be reported as its answer (exit 0 with old rows before)
    for extra, pattern in ((["--epochs", 2], r"holds another run than the one asked \(epochs=1, not 2\)"),
                           (["--subset", 48], r"subset=None, not 48"),
                           (["--set", "label_smoothing=0.1"], r"overrides=\{\}, not \{'label_smoothing': 0\.1\}")):
        done = cli(*sweep_args(swept, *extra))
        assert_one_line_error(done, pattern + r".*--overwrite")
        assert tree(point) == before


def test_differences_is_the_one_comparison(tiny_run):
    recorded = RunDir(tiny_run).read_config(need=("train", "recipe"))
    asked = TrainConfig(model="mixer_paper", data=DATA, epochs=1, batch_size=32, device="cpu",
                        model_kwargs=dict(TINY))
    assert differences(asked, recorded) == []
    assert differences(TrainConfig(**{**asked.to_dict(), "subset": 48, "epochs": 3}), recorded) == \
        [("subset", None, 48), ("epochs", 1, 3)]
    # a continuation compares only what it sets, recipe values against the recorded resolved recipe
    lr = recorded["recipe"]["lr"]
    assert differences(TrainConfig(resume=str(tiny_run), lr=lr), recorded) == []
    assert differences(TrainConfig(resume=str(tiny_run), lr=lr * 2), recorded) == [("lr", lr, lr * 2)]
    assert decide(RunDir(tiny_run), asked, reuse=True).action == "reuse"
    assert decide(RunDir(tiny_run), TrainConfig(resume=str(tiny_run), epochs=2)).action == "resume"
    with pytest.raises(RunError, match="holds a finished run"):
        decide(RunDir(tiny_run), asked)                                   # plain train never reuses silently


def test_non_finite_weights_are_a_damaged_run_for_every_verb(tiny_run, tmp_path):
    # before: `eval` exited 0 with "loss nan", `predict` printed nan probabilities
    run = shutil.copytree(tiny_run, tmp_path / "nan")
    weights = load_file(run / "last.safetensors")   # the verbs' default weights (no --validation: last)
    next(iter(weights.values())).view(-1)[0] = float("nan")
    save_file(weights, run / "last.safetensors")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "x.png")
    before = tree(run)
    cases = [["eval", "--run", run, "--device", "cpu"], ["predict", "--run", run, tmp_path / "x.png"],
             ["export", "--run", run, "--onnx", tmp_path / "x.onnx"],
             ["analyze", "attention-correlation", "--run", run, "--out", tmp_path / "an"]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda argv: cli(*argv), cases))
    for done in results:
        assert_one_line_error(done, r"last.safetensors holds non-finite weights .*damaged")
    assert tree(run) == before and not (tmp_path / "x.onnx").exists() and not (tmp_path / "an").exists()


# --- through cli.main in this process (the CLI's own error path, no interpreter start per case) ---------------
class Done:
    """What `cli.main` did, shaped like subprocess.run's result for `assert_one_line_error`."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def main_(capsys, *argv):
    from mixlab.cli import main
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return Done(code, out, err)


def test_a_run_directory_in_use_is_refused_by_pid_for_every_writer(tmp_path, capsys):
    """A second writer of a directory another live process trains: --overwrite, --resume, a plain train and a
    sweep over it are each one line "in use by PID N" (train takes the lock before it reads or removes
    anything; the table runners, which decide before their runs take the lock, look at it first), and the
    running run's files are untouched."""
    out = tmp_path / "sweep" / "model.depth=1" / "seed0"
    first = subprocess.Popen([*MIXLAB, *map(str, train_args(out, epochs=100000))], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "config.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended before the test could use it"
        config = (out / "config.json").read_bytes()
        in_use = rf"{out} is in use by PID {first.pid} \(a mixlab process"
        for argv in (train_args(out, "--overwrite", model="vit_paper"), ["train", "--resume", out, "--epochs", 3],
                     train_args(out), sweep_args(tmp_path / "sweep")):
            assert_one_line_error(main_(capsys, *argv), in_use)
        assert first.poll() is None and (out / "config.json").read_bytes() == config
        assert not (tmp_path / "sweep" / "sweep.json").exists()
    finally:
        first.kill()
        first.wait()


def test_outs_resumes_and_devices_that_name_nothing_are_one_line(tmp_path, capsys, tiny_run, monkeypatch):
    monkeypatch.chdir(tmp_path)   # before: --out '' trained into a fresh runs/<model>-<data>-<time>
    cases = [(train_args(""), r"--out '' names no directory"),
             (["train", "--resume", ""], r"--resume '' names no directory"),
             (["train", "--resume", tmp_path / "nowhere", "--epochs", 2],
              rf"nothing to resume at {tmp_path / 'nowhere'}: it does not exist")]
    if not torch.cuda.is_available():   # before: bench and analyze printed the driver's paragraph
        no_cuda = r"error: --device cuda was asked for but no CUDA device is available; use --device cpu$"
        cases += [(train_args(tmp_path / "c", "--device", "cuda"), no_cuda),
                  (["bench", "--models", "mixer_paper", "--device", "cuda"], no_cuda),
                  (["analyze", "attention-correlation", "--run", tiny_run, "--device", "cuda", "--out", "an"],
                   no_cuda)]
    for argv, pattern in cases:
        assert_one_line_error(main_(capsys, *argv), pattern)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_out_of_range_opsets_and_tolerances_and_cleans_killed_exports(tiny_run, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    for extra, pattern in ((["--opset", 0], r"--opset must be an integer from 7 to \d+ .*got 0"),
                           (["--opset", 99], r"got 99"), (["--atol", -1], r"--atol must be a finite tolerance ≥ 0"),
                           (["--atol", "nan"], r"got nan"), (["--atol", "inf"], r"got inf")):
        assert_one_line_error(main_(capsys, "export", "--run", tiny_run, "--onnx", target, *extra), pattern)
    assert list(tmp_path.iterdir()) == []   # before: --opset 0 exported at opset 17, --atol -1 kept a .rejected
    # temp files of killed exports (old names, and a PID no process has) go; a live writer's stays
    dead = tmp_path / ".m.onnx.mixlab-tmp-4194305-x.onnx"     # above Linux's largest PID (2**22)
    old, live = tmp_path / ".m.onnx.mixlab-tmp-abc123.onnx", tmp_path / f".m.onnx.mixlab-tmp-{os.getppid()}-y.onnx"
    other = tmp_path / ".n.onnx.mixlab-tmp-abc.onnx"          # another target's: not ours to remove
    for p in (dead, old, live, other):
        p.write_bytes(b"half an onnx file")
    done = main_(capsys, "export", "--run", tiny_run, "--onnx", target, "--no-verify")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", live.name, other.name])


def test_file_lists_with_huge_labels_or_fields_are_one_line(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "huge.csv").write_text("a.png,0\na.png,1000000000\n")     # before: 10^9 class names, memory gone
    (tmp_path / "digits.csv").write_text("a.png,0\na.png," + "9" * 5000 + "\n")
    (tmp_path / "field.csv").write_text("a.png,0\n" + "x" * 200_000 + ",1\n")   # csv's field limit is 131072
    for name, pattern in (("huge", r"huge.csv: integer label 1000000000 is too large .*at most 100,000"),
                          ("digits", r"integer label 9{20}… is too large"),
                          ("field", r"field.csv:2: not a csv file list line \(field larger than field limit")):
        assert_one_line_error(main_(capsys, "train", "--model", "mixer_paper", "--data", tmp_path / f"{name}.csv",
                                    "--device", "cpu", "--out", tmp_path / f"o_{name}"), pattern)
        assert not (tmp_path / f"o_{name}").exists()


def test_predict_escapes_names_refuses_pipes_and_reports_decompression_bombs(tiny_run, tmp_path, capsys,
                                                                            monkeypatch):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["class_names"] = ["\x1b]0;owned\x07\x1b[2J", "b\rB", "c", "d"]   # folder names can hold any byte
    (run / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "ok.png")
    done = main_(capsys, "predict", "--run", run, tmp_path / "ok.png", "--top-k", 4)
    assert done.returncode == 0 and "\x1b" not in done.stdout and "\r" not in done.stdout, done.stdout
    assert r"\x1b]0;owned\x07\x1b[2J" in done.stdout and r"b\rB" in done.stdout   # before: printed raw
    os.mkfifo(tmp_path / "pipe.png")
    assert_one_line_error(main_(capsys, "predict", "--run", run, tmp_path / "pipe.png"),
                          r"no image could be read: .*pipe.png: not a regular file \(a named pipe\)$")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 64x64 is more than twice that: Pillow's bomb error
    assert_one_line_error(main_(capsys, "predict", "--run", run, tmp_path / "bomb.png"),
                          r"bomb.png: too large to decode safely \(Image size \(4096 pixels\) exceeds limit")
    done = main_(capsys, "predict", "--run", run, tmp_path / "bomb.png", tmp_path / "pipe.png", tmp_path / "ok.png")
    assert done.returncode == 0 and done.stdout.startswith(str(tmp_path / "ok.png")), done.stderr
    assert done.stderr.count("skipped") == 2 and "Traceback" not in done.stderr


def test_a_missing_optional_extra_is_its_pip_line(tmp_path, capsys, monkeypatch):
    """diffusers (train/sample of a UNet), ray (--launcher ray): before, "internal error … please report it"."""
    from mixlab.train.recipes import load_recipe
    run = tmp_path / "unet"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "unet_tiny", "model_kwargs": {},
                                                 "recipe": load_recipe("ddpm").to_dict()}))
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.setitem(sys.modules, "ray", None)
    for argv, pattern in ((["sample", "--run", run, "--device", "cpu"], r"diffusers is not installed: pip install "
                                                                         r"'mixlab\[diffusion\]'$"),
                          (["train", "--model", "unet_tiny", "--data", DATA, "--out", tmp_path / "t", "--device",
                            "cpu"], r"diffusers is not installed: pip install 'mixlab\[diffusion\]'$"),
                          (sweep_args(tmp_path / "sw", "--launcher", "ray"),
                           r"error: the Ray launcher needs Ray: pip install 'mixlab\[ray\]'$")):
        assert_one_line_error(main_(capsys, *argv), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet"]


def test_image_folder_symlink_loops_are_followed_once(tmp_path, capsys):
    """`cat/up -> ..` indexed every image again under each class (and again through each loop: hundreds from a
    few files), `cat/self -> .` never ended; each folder is now read once, with one warning line."""
    from mixlab.data.imagefolder import folder_index
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c / "sub").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / c / "sub" / "s.png")
    os.symlink("..", tmp_path / "imgs" / "a" / "up")
    os.symlink("../../b", tmp_path / "imgs" / "a" / "sub" / "to_b")
    os.symlink(".", tmp_path / "imgs" / "b" / "self")
    os.symlink("../a/sub", tmp_path / "imgs" / "b" / "a_sub")   # a folder of class a: indexed once, under a
    index = folder_index(tmp_path / "imgs")
    names = [str(Path(p).relative_to(tmp_path / "imgs")) for p in index.paths]
    assert names == ["a/0.png", "a/1.png", "a/2.png", "a/3.png", "a/sub/s.png",
                     "b/0.png", "b/1.png", "b/2.png", "b/3.png", "b/sub/s.png"]
    assert index.labels.tolist() == [0] * 5 + [1] * 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 symlinked folder(s) lead to folders already indexed" in err[0], err
    os.mkfifo(tmp_path / "imgs" / "b" / "pipe.png")   # would block the header read forever
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\) .*pipe.png: not a regular file \(a named pipe\)"):
        folder_index(tmp_path / "imgs")


@needs_dataset("fashion-mnist")
def test_a_repeated_or_interrupted_demo_goes_on(tmp_path, capsys):
    """A rerun of `mixlab demo` into the same directory reuses its finished runs and resumes an interrupted one
    (it is a compare: the same plan and run directories); the table is the same. Another request is refused."""
    argv = ["demo", "--mixers", "token_mlp", "--subset", 40, "--epochs", 1, "--batch-size", 20, "--device", "cpu",
            "--out", tmp_path / "demo", "--data-dir", dataset_folder("fashion-mnist")]
    first = main_(capsys, *argv)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "demo" / "runs" / "token_mlp" / "seed-0"
    rows = json.loads((tmp_path / "demo" / "compare.json").read_text())["rows"]
    weights = (run / "best.safetensors").read_bytes()
    again = main_(capsys, *argv)
    assert again.returncode == 0 and "reusing the plan" in again.stdout, again.stderr
    assert "run(s) to train" not in again.stdout   # nothing trained again
    assert json.loads((tmp_path / "demo" / "compare.json").read_text())["rows"] == rows
    assert (run / "best.safetensors").read_bytes() == weights
    summary = json.loads((run / "summary.json").read_text())   # as a kill after the last commit leaves it
    (run / "summary.json").write_text(json.dumps({**summary, "completed": False}))
    resumed = main_(capsys, *argv)
    assert resumed.returncode == 0 and "1 run(s) to train" in resumed.stdout, resumed.stderr
    assert json.loads((tmp_path / "demo" / "compare.json").read_text())["rows"] == rows
    assert json.loads((run / "summary.json").read_text())["completed"]
    other = main_(capsys, *[a if a != 40 else 60 for a in argv])   # another request: refused, never reported
    assert_one_line_error(other, r"holds a compare with subset=40, not 60")


def test_damaged_files_of_every_kind_are_one_line_naming_the_file(tiny_run, tmp_path, capsys):
    """The second round of hostile files: weights, config, summary, trackers record and recipe files that are
    damaged, nested, of the wrong type or not regular files (a named pipe would block a read forever)."""
    def damaged(name, edit):
        run = shutil.copytree(tiny_run, tmp_path / name)
        edit(run)
        return run

    def config_set(key, value):
        def edit(run):
            config = json.loads((run / "config.json").read_text())
            config[key] = value
            (run / "config.json").write_text(json.dumps(config))
        return edit

    def pipe(name):
        def edit(run):
            (run / name).unlink()
            os.mkfifo(run / name)
        return edit

    def trackers(text):
        def edit(run):
            config_set("train", {**json.loads((run / "config.json").read_text())["train"],
                                 "trackers": ["tensorboard"]})(run)
            (run / "trackers.json").write_text(text)
        return edit

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(tmp_path / "pipe.yaml")
    cases = [
        (["eval", "--run", damaged("trunc", lambda r: (r / "last.safetensors").write_bytes(b"\x10" * 300)),
          "--device", "cpu"], r"trunc/last.safetensors is not a readable safetensors file .*damaged"),
        (["predict", "--run", damaged("st_pipe", pipe("last.safetensors")), tmp_path / "ok.png"],
         r"st_pipe/last.safetensors is not a regular file"),
        (["predict", "--run", damaged("nan_mean", config_set("mean", [float("nan")])), tmp_path / "ok.png"],
         r"nan_mean/config.json: 'mean' must be a list of finite numbers"),     # before: nan probabilities
        (["predict", "--run", damaged("bool_size", config_set("input_size", [True, 16, 16])), tmp_path / "ok.png"],
         r"'input_size' must be \[C, H, W\] positive integers"),
        (["predict", "--run", damaged("few_names", config_set("class_names", ["a"])), tmp_path / "ok.png"],
         r"class_names name 1 classes but its model has 4 outputs"),           # before: 'a', 'class 1', …
        (["train", "--resume", damaged("cfg_pipe", pipe("config.json")), "--epochs", 2],
         r"cfg_pipe/config.json is not a regular file \(a named pipe\)"),
        (["train", "--resume", damaged("sum_str", lambda r: (r / "summary.json").write_text(json.dumps(
            {**json.loads((r / "summary.json").read_text()), "epochs_done": "x"})))],
         r"trainer"),
        (["train", "--resume", damaged("trk", trackers("[1, 2]")), "--epochs", 2],
         r"trk/trackers.json must hold a JSON object, got list"),
        (["train", "--resume", damaged("trk_deep", trackers("[" * 100_000 + "]" * 100_000)), "--epochs", 2],
         r"trackers.json is not a mixlab file \(its JSON is nested too deeply\)"),
        (train_args(tmp_path / "r1", "--recipe", tmp_path / "nested.json"), r"nested.json is not a recipe \(its "
                                                                              r"JSON is nested too deeply\)"),
        (train_args(tmp_path / "r2", "--recipe", tmp_path / "pipe.yaml"), r"pipe.yaml is not a regular file"),
    ]
    for argv, pattern in cases:
        done = main_(capsys, *argv)
        if pattern == r"trainer":   # a non-integer epochs_done: no internal error (it resumes or says why)
            assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
            continue
        assert_one_line_error(done, pattern)
