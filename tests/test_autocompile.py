"""compile auto (mixlab.train.autocompile): the rule's transitions on given timings, and in real runs (on the
'eager'-like counting backend, so no C++ compiler is needed) the trial, the kept or dropped compiled net, the
resume that continues the recorded decision, and the failed compilation that trains exactly as eager."""
import pytest
import torch
from safetensors.torch import load_file

from mixlab.train import TrainConfig, train
from mixlab.train import autocompile as ac

TINY = {"depth": 1, "embed_dim": 32, "mlp_hidden_dim": 64, "drop_rate": 0.1}
DATA = "synthetic:256x1x16x16:4"


def config(tmp_path, name, **kw):
    base = dict(model="mixer_paper", data=DATA, epochs=3, batch_size=32, out=str(tmp_path / name),
                model_kwargs=dict(TINY), device="cpu", recipe="mixlab")
    base.update(kw)
    return TrainConfig(**base)


class CountingBackend:
    """A torch.compile backend that runs dynamo's graph as captured and counts the compiled calls."""
    def __init__(self, fail=False):
        self.calls, self.fail = 0, fail

    def __call__(self, graph, example_inputs):
        if self.fail:
            raise RuntimeError("no C++ compiler found\nsecond line of the compiler's report")

        def run(*args):
            self.calls += 1
            return graph.forward(*args)
        return run


@pytest.fixture
def always_try(monkeypatch):
    """Every run is long enough to try (and the counting backend instead of inductor)."""
    backend = CountingBackend()
    monkeypatch.setattr(ac, "MIN_EAGER_LEFT_S", 0.0)
    monkeypatch.setattr(ac, "BACKEND", backend)
    torch._dynamo.reset()
    return backend


# --- the rule, on given timings --------------------------------------------------------------------
def test_a_short_run_stays_eager_and_a_long_one_tries():
    rec = ac.start(None)
    assert rec == {"asked": "auto", "state": ac.MEASURING}
    # 10 steps: 1.5 s pass, 0.6 s of it the first step → 0.1 s/step
    assert ac.step_time(1.5, 0.6, 10) == pytest.approx(0.1)
    short = ac.next_record(rec, 1.5, 0.6, 10, steps_left=ac.MIN_EAGER_LEFT_S * 10 - 10)
    assert short["state"] == ac.OFF and "eager training left" in short["reason"]
    long = ac.next_record(rec, 1.5, 0.6, 10, steps_left=int(ac.MIN_EAGER_LEFT_S * 10) + 10)
    assert long["state"] == ac.TRIAL and long["eager_step_s"] == pytest.approx(0.1)


@pytest.mark.parametrize("compiled_step, state", [(0.08, ac.ON), (0.0975, ac.OFF), (0.12, ac.OFF)])
def test_the_trial_keeps_only_a_faster_step(compiled_step, state):
    trial = {"asked": "auto", "state": ac.TRIAL, "eager_step_s": 0.1, "eager_first_step_s": 0.6}
    # the compiled epoch: first step 20.6 s (20 s of compilation), then 9 steps of compiled_step
    after = ac.next_record(trial, 20.6 + 9 * compiled_step, 20.6, 10, steps_left=10_000)
    assert after["state"] == state
    assert after["compile_s"] == pytest.approx(20.0) and after["step_ratio"] == pytest.approx(compiled_step / 0.1)
    assert ac.next_record(after, 1.0, 0.1, 10, 10_000) is after   # decided: nothing changes it


def test_pinned_runs_never_measure():
    assert ac.start(True) == {"asked": "on", "state": ac.ON}
    assert ac.start(False, {"asked": "auto", "state": ac.ON}) == {"asked": "off", "state": ac.OFF}
    assert ac.next_record(ac.start(False), 1.0, 0.1, 10, 10**9)["state"] == ac.OFF
    recorded = {"asked": "auto", "state": ac.ON, "eager_step_s": 0.1}
    assert ac.start(None, recorded) == recorded   # a resumed auto run continues its decision


# --- in real runs ---------------------------------------------------------------------------------------
def test_auto_tries_one_epoch_and_keeps_a_faster_net(tmp_path, always_try, monkeypatch):
    monkeypatch.setattr(ac, "KEEP_RATIO", 1e9)   # any compiled step counts as faster
    summary = train(config(tmp_path, "keep"), log=None)
    rec = summary["compile"]
    assert rec["asked"] == "auto" and rec["state"] == ac.ON
    assert {"eager_step_s", "compiled_step_s", "compile_s", "step_ratio", "reason"} <= rec.keys()
    steps = 256 // 32
    assert always_try.calls >= 2 * steps   # epoch 2 (the trial) and epoch 3 went through the compiled net


def test_auto_drops_a_slower_net_and_a_resume_keeps_the_decision(tmp_path, always_try, monkeypatch):
    monkeypatch.setattr(ac, "KEEP_RATIO", 0.0)   # no compiled step is fast enough
    first = train(config(tmp_path, "drop", epochs=2), log=None)
    assert first["compile"]["state"] == ac.OFF and "not under" in first["compile"]["reason"]
    after_trial = always_try.calls
    assert after_trial >= 256 // 32
    resumed = train(TrainConfig(resume=str(tmp_path / "drop"), epochs=4, device="cpu"), log=None)
    assert resumed["compile"] == first["compile"] and resumed["epochs_done"] == 4
    assert always_try.calls == after_trial   # epochs 3-4 eager: no new trial, no compiled call


def test_a_failed_compilation_trains_exactly_as_eager(tmp_path, monkeypatch):
    monkeypatch.setattr(ac, "MIN_EAGER_LEFT_S", 0.0)
    monkeypatch.setattr(ac, "BACKEND", CountingBackend(fail=True))
    torch._dynamo.reset()
    failed = train(config(tmp_path, "failed"), log=None)
    assert failed["compile"]["state"] == ac.OFF
    assert failed["compile"]["reason"].startswith("compiling failed:") and "\n" not in failed["compile"]["reason"]
    eager = train(config(tmp_path, "eager", compile=False), log=None)
    assert eager["compile"] == {"asked": "off", "state": ac.OFF}
    assert failed["test_top1"] == eager["test_top1"] and failed["test_loss"] == eager["test_loss"]
    a, b = load_file(tmp_path / "failed" / "last.safetensors"), load_file(tmp_path / "eager" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
