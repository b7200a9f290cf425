"""ONNX export of every model family checked with onnxruntime (CPU), and the export/predict CLI verbs."""
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mixlab
from mixlab.cli import main
from mixlab.export import ExportError, export_onnx, export_run, ort_session, require
from mixlab.mixers.fourier import AdaptiveFrequencyFilter
from mixlab.predict import expand_paths, predict_files, read_image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# One small model per registered family: (name, in_chans, img_size, overrides).
CASES = {
    "vit": ("vit_paper", 3, 32, dict(depth=2)),
    "mixer": ("mixer_paper", 1, 28, dict(depth=2)),
    "localvit": ("localvit_paper", 1, 28, dict(depth=2)),
    "ninformer": ("ninformer_paper", 1, 28, dict(depth=2)),
    "activator": ("activator_paper", 3, 32, dict(depth=2)),
    "activator_glu": ("activator_glu_paper", 1, 28, dict(depth=2)),
    "aff": ("aff_paper_size", 1, 28, dict(depth=2)),           # 7×7 grid: odd width, no Nyquist column
    "affnet": ("affnet_et", 3, 32, dict(depths=(1, 1, 1))),
    "dia": ("dia_resnet164", 1, 28, dict(depth=11)),
    "dia_vit": ("dia_vit_paper", 3, 32, dict(depth=2)),
    "resnet": ("resnet164", 3, 32, dict(depth=11)),
    "poolformer": ("poolformer_tiny", 3, 32, dict(depth=2)),
    "identityformer": ("identityformer_tiny", 1, 28, dict(depth=2)),
    "metaformer": ("metaformer_speed", 3, 32, dict(depths=(1, 1, 1))),
}


def _build(name, in_chans, img_size, overrides, num_classes=10):
    torch.manual_seed(0)
    return mixlab.create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                               **overrides).eval()


# Families that `mixlab export` does not handle, with the reason.
NOT_EXPORTED = {"unet": "a denoiser with two inputs (x_t, t) and an image output; export serves classifiers"}


def test_every_registered_family_has_an_export_case():
    families = {mixlab.model_cfg(n)["family"] for n in mixlab.list_models()} - set(NOT_EXPORTED)
    assert families <= {mixlab.model_cfg(c[0])["family"] for c in CASES.values()}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_onnx_matches_pytorch(tmp_path, case):
    name, chans, size, overrides = CASES[case]
    model = _build(name, chans, size, overrides)
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report.max_abs_diff <= 1e-4 and report.verify_batch == 4 and report.input_size == [chans, size, size]
    # The batch axis is dynamic: other batch sizes than the traced one (1) and the checked one (4) run too.
    session = ort_session(tmp_path / "m.onnx")
    x = torch.randn(3, chans, size, size)
    out = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == (3, 10) and np.abs(out - ref).max() <= 1e-4
    # AFF was switched to its DFT formulation for the export only.
    assert all(m.fft_impl == "torch" for m in model.modules() if isinstance(m, AdaptiveFrequencyFilter))


def test_aff_with_even_grid_exports_the_nyquist_column(tmp_path):
    model = _build("aff_paper_size", 3, 32, dict(depth=1))   # 8×8 grid: rfft has a Nyquist column
    assert export_onnx(model, tmp_path / "m.onnx").max_abs_diff <= 1e-4


class _RawFFT(torch.nn.Module):
    in_chans, img_size = 1, 8

    def forward(self, x):
        return torch.fft.fft2(x).abs().flatten(1)


def test_unexportable_model_gets_a_reason(tmp_path):
    with pytest.raises(ExportError, match="cannot export _RawFFT.*fft"):
        export_onnx(_RawFFT(), tmp_path / "m.onnx")


def test_torch_fft_path_needs_the_dynamo_exporter(tmp_path):
    model = _build("aff_paper_size", 1, 16, dict(depth=1))
    with pytest.raises(ExportError, match="fft_impl='dft' or dynamo=True"):
        export_onnx(model, tmp_path / "m.onnx", fft_impl="torch")
    assert all(m.fft_impl == "torch" for m in model.modules() if isinstance(m, AdaptiveFrequencyFilter))


def test_tolerance_breach_is_an_error(tmp_path):
    model = _build("aff_paper_size", 1, 16, dict(depth=1))    # DFT-as-matmul vs FFT is never bit-exact
    (tmp_path / "m.onnx").write_bytes(b"a good export from before")
    with pytest.raises(ExportError, match="differs from PyTorch.*m.onnx was not written.*m.rejected.onnx"):
        export_onnx(model, tmp_path / "m.onnx", atol=1e-12)
    assert (tmp_path / "m.onnx").read_bytes() == b"a good export from before"   # never replaced by a bad graph
    assert (tmp_path / "m.rejected.onnx").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.rejected.onnx"]   # no temp file left


def test_bad_output_name_and_missing_dependency(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(_build("vit_paper", 3, 32, dict(depth=1)), tmp_path / "m.bin")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeError, match=r"pip install 'mixlab\[export\]'"):
        require("onnxruntime")


def _run_dir(tmp_path, name="ninformer_paper", chans=1, size=28, num_classes=10, **overrides):
    model = _build(name, chans, size, {"depth": 1, **overrides}, num_classes=num_classes)
    run = tmp_path / "run"
    mixlab.save(model, run, weights_name="best.safetensors", mean=[0.25] * chans, std=[0.5] * chans,
                class_names=[f"class_{i}" for i in range(num_classes)], dataset="unit")
    return model, run


def test_export_run_stores_data_config_in_metadata(tmp_path):
    import onnx
    _, run = _run_dir(tmp_path)
    report = export_run(run, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["mixlab_model"] == "ninformer_paper" and report.model == "ninformer_paper"
    assert json.loads(props["class_names"])[3] == "class_3" and json.loads(props["mean"]) == [0.25]
    assert json.loads(props["input_size"]) == [1, 28, 28]


def test_cli_export(tmp_path, capsys):
    _, run = _run_dir(tmp_path)
    assert main(["export", "--run", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and (tmp_path / "m.onnx").exists()
    assert main(["export", "--run", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert "error: no checkpoint" in capsys.readouterr().err


# --- predict ------------------------------------------------------------------------------------------

def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def test_read_image_converts_like_training_data(tmp_path):
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 255                                            # pure red → L = 0.299·255 ≈ 76
    x = read_image(_png(tmp_path / "red.png", rgb), [1, 28, 28])
    assert x.shape == (1, 28, 28) and torch.allclose(x, torch.full_like(x, 76 / 255))
    gray = np.full((28, 28), 200, dtype=np.uint8)
    y = read_image(_png(tmp_path / "gray.png", gray), [3, 32, 32])
    assert y.shape == (3, 32, 32) and torch.allclose(y, torch.full_like(y, 200 / 255))


def test_predict_matches_the_model_on_normalised_input(tmp_path):
    model, run = _run_dir(tmp_path)
    loaded = mixlab.load(run)
    pixels = (np.arange(28 * 28).reshape(28, 28) % 251).astype(np.uint8)
    png = _png(tmp_path / "a.png", pixels)
    (pred,), skipped = predict_files(loaded, [png], top_k=3)
    x = (torch.from_numpy(pixels).float()[None, None] / 255 - 0.25) / 0.5
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    values, indices = probs.topk(3)
    assert skipped == [] and [n for n, _ in pred.top] == [f"class_{i}" for i in indices.tolist()]
    assert np.allclose([p for _, p in pred.top], values.tolist(), atol=1e-6)


def test_predict_caps_top_k_and_skips_unreadable(tmp_path):
    _, run = _run_dir(tmp_path, num_classes=3)
    model = mixlab.load(run)
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "b.png", np.zeros((10, 10, 3), dtype=np.uint8))
    _png(folder / "a.jpg", np.full((50, 50), 90, dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image, not an image extension")
    (folder / "bad.png").write_bytes(b"not an image")
    assert [p.name for p in expand_paths([folder])] == ["a.jpg", "b.png", "bad.png"]
    preds, skipped = predict_files(model, [folder, tmp_path / "missing.png"], top_k=5)
    assert [p.path.split("/")[-1] for p in preds] == ["a.jpg", "b.png"]
    assert all(len(p.top) == 3 and abs(sum(v for _, v in p.top) - 1) < 1e-5 for p in preds)
    assert all(p.top[0][1] >= p.top[1][1] >= p.top[2][1] for p in preds)
    assert skipped == [(str(folder / "bad.png"), "cannot identify image"),
                       (str(tmp_path / "missing.png"), "no such file")]


def test_cli_predict(tmp_path, capsys):
    _, run = _run_dir(tmp_path)
    good = _png(tmp_path / "good.png", np.full((64, 64, 3), 30, dtype=np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--run", str(run), str(good), str(bad), "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {bad}: cannot identify image" in captured.err
    lines = captured.out.splitlines()
    assert lines[0] == str(good) and lines[1].lstrip().startswith("1. class_") and len(lines) == 3
    assert main(["predict", "--run", str(run), str(bad)]) == 1
