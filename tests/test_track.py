"""Experiment trackers, read back from their own files: TensorBoard events through tensorboard's event reader,
MLflow's local file store through its client, W&B offline files decoded from disk; a resumed run continues
the same tracker run and sends no step twice."""
import glob
import json
import struct

import pytest

from mixlab.cli import main as cli_main
from mixlab.train import TrainConfig, train

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.0}
DATA = "synthetic:128x1x16x16:4"   # 128 images at batch 32: 4 steps an epoch


def config(tmp_path, epochs, **kw):
    return TrainConfig(model="mixer_paper", data=DATA, epochs=epochs, batch_size=32, out=str(tmp_path / "run"),
                       model_kwargs=dict(TINY), device="cpu", **kw)


def steps_csv(run):
    lines = (run / "steps.csv").read_text().strip().splitlines()[1:]
    return [(int(s), float(lr), float(loss)) for s, lr, loss in (ln.split(",") for ln in lines)]


def wandb_records(path):
    """The protobuf records of a W&B .wandb file (LevelDB log format: a 7-byte header, then 32 KiB blocks of
    records, each crc32 (4) + length (2, little-endian) + type (1: full, 2: first, 3: middle, 4: last))."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, out, part = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


def test_three_trackers_read_back_and_a_resume_continues_them(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    trackers = ("tensorboard", "mlflow", "wandb")
    train(config(tmp_path, 2, trackers=trackers))
    s = train(TrainConfig(resume=str(run), epochs=3, device="cpu"))   # no --log: the run's trackers continue
    assert s["completed"] and s["epochs_done"] == 3
    steps = steps_csv(run)
    assert len(steps) == 12
    record = json.loads((run / "trackers.json").read_text())
    assert {k: v["epochs"] for k, v in record.items()} == {t: 3 for t in trackers}
    summary = json.loads((run / "summary.json").read_text())

    # TensorBoard: every step once, as steps.csv; epoch metrics at each epoch's last step; hparams, curves
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    loss = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    assert [st for st, _ in loss] == list(range(1, 13))
    assert all(v == pytest.approx(l, rel=1e-6) for (_, v), (_, _, l) in zip(loss, steps))
    assert [e.value for e in ea.Scalars("train/lr")] == pytest.approx([lr for _, lr, _ in steps], rel=1e-6)
    assert [(e.step, e.value) for e in ea.Scalars("epoch/epoch")] == [(4, 1), (8, 2), (12, 3)]
    assert ea.Scalars("epoch/test_top1")[-1].value == pytest.approx(summary["test_top1"], rel=1e-6)
    assert ea.PluginTagToContent("hparams")   # the resolved config + recipe as hyper-parameters
    assert [i.step for i in ea.Images("curves")] == [8, 12]   # each finish: 2 epochs, then extended to 3

    # MLflow: one run (the resume reopened it), params = the resolved recipe, every step once, artifacts
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("mixlab").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == record["mlflow"]["run_id"]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["recipe.lr"] == str(json.loads((run / "config.json").read_text())["recipe"]["lr"])
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, 13))
    assert [m.value for m in history] == pytest.approx([l for _, _, l in steps], rel=1e-9)
    top1 = client.get_metric_history(runs[0].info.run_id, "epoch/test_top1")
    assert [m.step for m in top1] == [4, 8, 12] and top1[-1].value == pytest.approx(summary["test_top1"])
    arts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"config.json", "summary.json", "curves.png"} <= arts

    # W&B offline: two local files of one run id (before and after the resume), steps 1-8 then 9-12
    files = sorted(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2 and all(f.endswith(f"run-{record['wandb']['id']}.wandb") for f in files)
    seen = []
    for f in files:
        for rec in wandb_records(f):
            if rec.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                seen.append((int(items["_step"]), items["train/loss"]))
    assert [st for st, _ in seen] == list(range(1, 13))
    assert [v for _, v in seen] == pytest.approx([l for _, _, l in steps], rel=1e-6)


def test_a_missing_or_unknown_tracker_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--model", "mixer_paper", "--data", DATA, "--log", "tensorboard,mlflow",
                  "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pip install 'mixlab[track]'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        cli_main(["sweep", "--model", "mixer_paper", "--data", DATA, "--log", "neptune"])
    err = capsys.readouterr().err
    assert "unknown tracker 'neptune'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="pip install 'mixlab\\[track\\]'"):
        train(config(tmp_path, 1, trackers=("mlflow",)))
    assert not (tmp_path / "run").exists()


def test_compare_logs_each_run_to_the_tracker(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("scipy")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "c"
    assert cli_main(["compare", "--mixers", "pooling", "--data", DATA, "--budget", "4steps", "--seeds", "1",
                     "--skeleton", "demo", "--width", "16", "--patch", "4", "--batch-size", "32", "--device", "cpu",
                     "--no-measure", "--log", "tensorboard", "--out", str(out)]) == 0
    run = out / "runs" / "pooling" / "seed-0"
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    losses = [e.value for e in ea.Scalars("train/loss")]
    assert len(losses) == 4 and losses == pytest.approx([loss for _, _, loss in steps_csv(run)], rel=1e-6)
