"""A hostile user against the real `mixlab` entry point: every bad input and fault ends in one error line on
stderr and a non-zero exit, and nothing already on disk is lost or corrupted (issue: one owner per concept).

The one-line cases run as real subprocesses of the installed console script (concurrently, to keep CI fast);
faults that need a small or read-only file system mount a tmpfs (root) and skip where that is not allowed.
"""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mixlab
from mixlab.rundir import RunDir
from mixlab.train import TrainConfig, TrainingDiverged, train

_SCRIPT = Path(sys.executable).parent / "mixlab"
MIXLAB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mixlab.cli"]
TINY = {"depth": 1, "embed_dim": 16, "mlp_hidden_dim": 32}
DATA = "synthetic:96x1x16x16:4"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def cli(*args, timeout=300, **kw):
    return subprocess.run([*MIXLAB, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV,
                          **kw)


def train_args(out, *extra, model="mixer_paper", epochs=1):
    return ["train", "--model", model, "--data", DATA, "--epochs", epochs, "--batch-size", 32, "--device", "cpu",
            "--out", out, "--model-kwargs", json.dumps(TINY), *extra]


def assert_one_line_error(done, pattern):
    """Non-zero exit; stderr ends in exactly one `mixlab …: error: …` line matching `pattern`; no traceback."""
    import re
    assert done.returncode != 0, done.stdout[-500:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in lines if re.match(r"^mixlab( \w+)?: error: ", ln)]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr[-2000:]
    assert "internal error" not in errors[0], errors[0]
    assert re.search(pattern, errors[0]), f"{pattern!r} not in {errors[0]!r}"


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


# --- a finished run, and fixtures for the hand-edited and corrupted cases -------------------------------
@pytest.fixture(scope="module")
def finished(tiny_run):
    return tiny_run   # conftest's session run: TINY on DATA, 1 epoch


def copy_run(run, dest, config_edit=None, state_bytes=None):
    shutil.copytree(run, dest)
    if config_edit is not None:
        config = json.loads((dest / "config.json").read_text())
        config_edit(config)
        (dest / "config.json").write_text(json.dumps(config))
    if state_bytes is not None:
        (dest / "trainer_state.pt").write_bytes(state_bytes)
        summary = json.loads((dest / "summary.json").read_text())
        summary["completed"] = False            # so a resume has to read the state
        (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def _pop(*keys):
    def edit(config):
        for k in keys:
            config.pop(k, None)
    return edit


def _set(key, value):
    def edit(config):
        config[key] = value
    return edit


def _bogus_kwarg(config):
    config["model_kwargs"]["bogus"] = 1


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def image_folder(root, classes_train, classes_test, n=6, size=8, mode="L"):
    rng = np.random.default_rng(0)
    for split, classes in (("train", classes_train), ("test", classes_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size, size) if mode == "L" else (size, size, 3)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
    return root


def one_line_cases(finished, tmp):
    """(id, argv, pattern) for every case that must end in one error line."""
    (tmp / "a_file").write_text("x")
    bad = {}
    for name, edit in (("unknown_kwarg", _bogus_kwarg), ("kwargs_string", _set("model_kwargs", "depth=1")),
                       ("model_number", _set("model", 7)), ("no_mean_std", _pop("mean", "std")),
                       ("no_train", _pop("train"))):
        bad[name] = copy_run(finished, tmp / f"cfg_{name}", config_edit=edit)
    payload = pickle.dumps({"epoch": 1, "model": Payload(tmp / "pwned")})
    for name, data in (("random", os.urandom(4096)), ("empty", b""), ("pickle", payload)):
        bad[f"state_{name}"] = copy_run(finished, tmp / f"state_{name}", state_bytes=data)
    missing = copy_run(finished, tmp / "state_keys")
    torch.save({"epoch": 1, "model": {}}, missing / "trainer_state.pt")
    summary = json.loads((missing / "summary.json").read_text())
    summary["completed"] = False
    (missing / "summary.json").write_text(json.dumps(summary))
    deleted = copy_run(finished, tmp / "state_deleted")
    (deleted / "trainer_state.pt").unlink()
    (deleted / "summary.json").write_text(json.dumps({**summary, "completed": False}))
    folder_extra = image_folder(tmp / "imgs_extra", ["a", "b"], ["a", "b", "c"])
    folder_one = image_folder(tmp / "imgs_one", ["a"], ["a"])
    good_png = tmp / "good.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(good_png)
    return [
        ("finished_run_refused", train_args(finished), r"holds a finished run of mixer_paper.*--overwrite"),
        ("set_optimizer", train_args(tmp / "o1", "--set", "optimizer=rmsprop"),
         r"optimizer must be one of adam, adamw, sgd, got 'rmsprop'"),
        ("set_ema_decay", train_args(tmp / "o2", "--set", "ema_decay=abc"), r"ema_decay must be a number"),
        ("set_unknown_key", train_args(tmp / "o3", "--set", "warmup=3"), r"unknown recipe key 'warmup'"),
        ("kwargs_bogus", ["train", "--model", "vit_paper", "--data", DATA, "--out", tmp / "o4", "--model-kwargs",
                          '{"bogus": 1}'], r"bogus"),
        ("kwargs_depth_abc", ["train", "--model", "vit_paper", "--data", DATA, "--out", tmp / "o5",
                              "--model-kwargs", '{"depth": "abc"}'], r"depth"),
        ("kwargs_num_classes", ["train", "--model", "vit_paper", "--data", DATA, "--out", tmp / "o6",
                                "--model-kwargs", '{"num_classes": 3}'], r"num_classes cannot be set.*dataset"),
        ("kwargs_not_object", ["train", "--model", "vit_paper", "--data", DATA, "--model-kwargs", "[1]"],
         r"expected a JSON object"),
        ("lr_inf", train_args(tmp / "o7", "--lr", "inf"), r"learning rate must be a finite positive number"),
        ("batch_size_0", train_args(tmp / "o8") + ["--batch-size", "0"], r"--batch-size: expected a positive"),
        ("out_is_file", train_args(tmp / "a_file"), r"a_file.*(is a file|not a mixlab run)"),
        ("out_under_file", train_args(tmp / "a_file" / "run"), r"a_file.*(not a folder|is a file)"),
        ("missing_data_dir", train_args(tmp / "o9") + ["--data", "fashion-mnist", "--data-dir", tmp / "nowhere"],
         r"--data-dir .*nowhere is not a folder"),
        ("imagefolder_extra_test_class", ["train", "--model", "vit_paper", "--data", folder_extra,
                                          "--out", tmp / "o10", "--model-kwargs", json.dumps(TINY)],
         r"class folder\(s\) c are not in the train split"),
        ("imagefolder_one_class", ["train", "--model", "vit_paper", "--data", folder_one, "--out", tmp / "o11"],
         r"at least two class folders"),
        ("models_negative_classes", ["models", "vit_paper", "--num-classes", "-3"],
         r"--num-classes: expected a non-negative integer"),
        ("bench_json_is_dir", ["bench", "--models", "vit_paper", "--json", tmp], r"it is a folder"),
        ("bench_csv_under_file", ["bench", "--models", "vit_paper", "--csv", tmp / "a_file" / "x.csv"],
         r"a_file"),
        ("bench_plot_dir_is_file", ["bench", "--models", "vit_paper", "--plot-dir", tmp / "a_file"],
         r"a_file.*is a file"),
        ("export_onnx_under_file", ["export", "--run", finished, "--onnx", tmp / "a_file" / "m.onnx"], r"a_file"),
        ("export_onnx_is_dir", ["export", "--run", finished, "--onnx", tmp / "d.onnx"], r"it is a folder"),
        ("config_unknown_kwarg_eval", ["eval", "--run", bad["unknown_kwarg"], "--device", "cpu"], r"bogus"),
        ("config_unknown_kwarg_resume", ["train", "--resume", bad["unknown_kwarg"], "--epochs", "2"],
         r"disagrees with the model it was trained as"),
        ("config_kwargs_string_predict", ["predict", "--run", bad["kwargs_string"], good_png],
         r"'model_kwargs' must be a JSON object"),
        ("config_kwargs_string_resume", ["train", "--resume", bad["kwargs_string"], "--epochs", "2"],
         r"'model_kwargs' must be a JSON object"),
        ("config_model_number_export", ["export", "--run", bad["model_number"], "--onnx", tmp / "n.onnx"],
         r"'model' must be a model name"),
        ("config_model_number_eval", ["eval", "--run", bad["model_number"]], r"'model' must be a model name"),
        ("config_no_mean_std_predict", ["predict", "--run", bad["no_mean_std"], good_png], r"mean/std"),
        ("config_no_mean_std_eval", ["eval", "--run", bad["no_mean_std"]], r"no 'mean'"),
        ("config_no_train_resume", ["train", "--resume", bad["no_train"], "--epochs", "2"], r"no 'train'"),
        ("state_random_bytes", ["train", "--resume", bad["state_random"]], r"trainer_state.pt is not a mixlab"),
        ("state_empty", ["train", "--resume", bad["state_empty"]], r"trainer_state.pt is empty"),
        ("state_pickle_payload", ["train", "--resume", bad["state_pickle"]], r"trainer_state.pt is not a mixlab"),
        ("state_missing_keys", ["train", "--resume", missing], r"missing optimizer, rng, history"),
        ("state_deleted", ["train", "--resume", deleted], r"completed epochs but no trainer_state.pt"),
        ("resume_and_overwrite", train_args(tmp / "o12", "--resume", tmp / "o12", "--overwrite"),
         r"give one of them"),
        ("unknown_model", ["train", "--model", "vit_papr", "--data", DATA], r"did you mean vit_paper"),
    ]


@pytest.fixture(scope="module")
def one_line_results(finished, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cases")
    (tmp / "d.onnx").mkdir()
    cases = one_line_cases(finished, tmp)
    before = snapshot(finished)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([c[0] for c in cases], pool.map(lambda c: cli(*c[1]), cases)))
    return {"cases": {c[0]: c for c in cases}, "results": results, "before": before, "tmp": tmp}


def test_every_bad_input_is_one_line_and_a_nonzero_exit(one_line_results, finished):
    failures = []
    for name, (_, argv, pattern) in one_line_results["cases"].items():
        try:
            assert_one_line_error(one_line_results["results"][name], pattern)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert len(one_line_results["cases"]) >= 35
    # nothing was lost: the finished run is byte-identical, the pickle payload never ran
    assert snapshot(finished) == one_line_results["before"]
    assert not (one_line_results["tmp"] / "pwned").exists()


# --- the run directory: overwrite, lock, kill, resume -----------------------------------------------------
def test_overwrite_replaces_a_finished_run_and_a_kill_leaves_no_mixed_directory(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    proc = subprocess.Popen([*MIXLAB, *map(str, train_args(run, "--overwrite", model="vit_paper", epochs=3))],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:   # kill as soon as the new run has written its config
        try:
            if json.loads((run / "config.json").read_text())["model"] == "vit_paper":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "vit_paper"
    if "summary.json" in names:   # only files of the new run may be there
        assert json.loads((run / "summary.json").read_text())["model"] == "vit_paper"
    assert RunDir(run).status() == "partial"
    done = cli("train", "--resume", run)
    assert done.returncode == 0, done.stderr[-1500:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "vit_paper" and summary["completed"] and summary["epochs_done"] == 3
    assert not any(p.name.startswith(".") for p in run.iterdir())   # no lock, no temp file left


def test_stale_temp_files_are_cleaned_and_files_follow_the_umask(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / ".last.safetensors.mixlab-tmp-abc.safetensors").write_bytes(b"half a file")
    done = subprocess.run([*MIXLAB, *map(str, ["train", "--resume", run, "--epochs", "2"])], capture_output=True,
                          text=True, env=ENV, preexec_fn=lambda: os.umask(0o027), timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    assert not any(".mixlab-tmp-" in p.name for p in run.iterdir())
    for name in ("config.json", "last.safetensors", "trainer_state.pt", "summary.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name   # 0666 & ~027, not mkstemp's 0600


# --- NaN and divergence ---------------------------------------------------------------------------------
def test_divergence_in_the_last_update_of_an_epoch_is_caught_and_nothing_nan_is_committed(tmp_path, monkeypatch):
    # The loss of a step is computed before its update, so an update that breaks the weights in the last step
    # of an epoch shows in no loss of that epoch: only the check on the weights sees it.
    import mixlab.train.engine as engine
    real = engine._backward_and_step
    steps = {"n": 0}

    def breaks_the_last_update_of_epoch_2(run, loss):
        real(run, loss)
        steps["n"] += 1
        if steps["n"] == 2 * run.steps_per_epoch:
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("inf"))

    monkeypatch.setattr(engine, "_backward_and_step", breaks_the_last_update_of_epoch_2)
    cfg = TrainConfig(model="mixer_paper", data=DATA, epochs=3, batch_size=32, device="cpu",
                      out=str(tmp_path / "run"), model_kwargs=dict(TINY))
    with pytest.raises(TrainingDiverged, match=r"weights became non-finite \(patch_embed.proj.weight\) in the "
                                               r"last steps of epoch 2; the last good checkpoint is epoch 1"):
        train(cfg, log=None)
    state = RunDir(tmp_path / "run").read_state()
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["completed"] is False and summary["stopped"].startswith("diverged")


def test_a_non_finite_test_loss_stops_the_run(tmp_path, monkeypatch):
    from mixlab.train.classification import ClassificationTask
    real = ClassificationTask.evaluate
    calls = {"n": 0}

    def poisoned(self, run, epoch):
        calls["n"] += 1
        result = real(self, run, epoch)
        return {**result, "test_loss": float("nan")} if calls["n"] == 2 else result

    monkeypatch.setattr(ClassificationTask, "evaluate", poisoned)
    cfg = TrainConfig(model="mixer_paper", data=DATA, epochs=3, batch_size=32, device="cpu",
                      out=str(tmp_path / "run"), model_kwargs=dict(TINY))
    with pytest.raises(TrainingDiverged, match=r"test loss became nan after epoch 2; the last good checkpoint is "
                                               r"epoch 1"):
        train(cfg, log=None)
    state = RunDir(tmp_path / "run").read_state()
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_cli_divergence_is_one_line_and_summary_is_valid_json(tmp_path):
    done = cli(*train_args(tmp_path / "run", "--lr", "1e30", epochs=2))
    assert_one_line_error(done, r"(loss|weights) became (nan|inf|non-finite)")
    json.loads((tmp_path / "run" / "summary.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))


# --- faults of the file system (tmpfs mounts need root) ---------------------------------------------------
def _mount(path, size, readonly=False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    return path


@pytest.fixture
def small_fs(tmp_path):
    mounts = []

    def make(size="64k", readonly=False):
        mounts.append(_mount(tmp_path / f"fs{len(mounts)}", size, readonly))
        return mounts[-1]

    yield make
    for m in mounts:
        subprocess.run(["umount", str(m)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_old_files_stay(small_fs, finished):
    done = cli(*train_args(small_fs("96k") / "run"))   # the config fits, the trainer state does not
    assert_one_line_error(done, r"cannot write .*trainer_state.pt: disk full")
    # SafetensorError on a full disk (mixlab.save) is the same one line, and never replaces a good file
    disk = small_fs("256k")
    model = mixlab.load(finished)
    mixlab.save(model, disk / "saved", weights_name="model.safetensors")
    good = (disk / "saved" / "model.safetensors").read_bytes()
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:   # the file system is full
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - len(good) // 2))   # room for the config, not the weights
    os.close(fd)
    with pytest.raises(OSError, match=r"cannot write .*model.safetensors: disk full"):
        mixlab.save(model, disk / "saved", weights_name="model.safetensors")
    assert (disk / "saved" / "model.safetensors").read_bytes() == good


def test_read_only_file_systems_are_one_line(small_fs, finished):
    ro = small_fs("64k", readonly=True)
    cases = [(train_args(ro / "run"), r"read-only file system"),
             (["bench", "--models", "vit_paper", "--json", ro / "b.json"], r"read-only file system"),
             (["export", "--run", finished, "--onnx", ro / "m.onnx"], r"read-only file system")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda c: cli(*c[0]), cases))
    for (argv, pattern), done in zip(cases, results):
        assert_one_line_error(done, pattern)


# --- large folders and 16-bit images ----------------------------------------------------------------------
def test_an_image_folder_larger_than_the_open_file_limit_loads(tmp_path):
    image_folder(tmp_path / "many", ["a", "b"], ["a", "b"], n=150, size=4)   # 600 files
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
            "from mixlab.data import load_dataset; ds = load_dataset(%r, 'train', verbose=False); print(len(ds))"
            % str(tmp_path / "many"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "300", done.stderr[-1500:]


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    from mixlab.data.images import decode
    from mixlab.predict import read_image
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)          # 0 … 65535
    Image.fromarray(ramp).save(tmp_path / "deep.png")                       # a uint16 array is mode I;16
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    deep, gray = decode(tmp_path / "deep.png")
    assert gray and deep.dtype == np.uint8 and np.array_equal(deep[0], (ramp // 257).astype(np.uint8))
    a, b = read_image(tmp_path / "deep.png", (1, 16, 16)), read_image(tmp_path / "flat.png", (1, 16, 16))
    assert torch.equal(a, b) and 0.0 < a.mean() < 1.0

