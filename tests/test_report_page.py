"""mixlab report: one self-contained HTML page for runs. Read back with Python's html.parser (always) and, where
/usr/bin/chromium is installed, in headless Chromium: every image is an embedded PNG that decodes (in the
browser: complete with a natural width), the summary table holds summary.json's numbers exactly, the config
diff lists exactly the keys that differ, strings from runs are escaped, the confusion matrix is the one whose
trace gives `mixlab eval`'s top-1, and bad input is one line with nothing written."""
import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mixlab.cli import main
from mixlab.data.dataset import ImageDataset
from mixlab.report_page import LOAD_SCRIPT, config_diff
from mixlab.train import TrainConfig, evaluate_run, train
from mixlab.train.evaluate import confusion_matrix

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script>"
ODD_DIR = "b<i>\"'&"          # a run directory whose name is markup
PNG = b"\x89PNG\r\n\x1a\n"


class FirstPixel(torch.nn.Module):
    """Logits that pick the class written in each image's first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].round().long(), 3).float()


class Page(HTMLParser):
    """Every tag with its attributes, the <script> bodies, the summary table's cells and the config table's row
    keys, as a browser would read them (entities decoded)."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.cells, self.config_keys, self.texts = [], [], {}, [], []
        self._stack, self._cell, self._table, self._row_head = [], None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._stack.append(tag)
        if tag == "table":
            self._table = attrs.get("id")
        if tag == "td" and self._table == "summary-table":
            self._cell = (int(attrs["data-run"]), attrs["data-key"], "data-absent" in attrs)
            self.cells[self._cell] = ""
        if tag == "th" and self._table == "config-diff" and "tbody" in self._stack:
            self._row_head = ""

    def handle_endtag(self, tag):
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag == "td":
            self._cell = None
        if tag == "th" and self._row_head is not None:
            self.config_keys.append(self._row_head)
            self._row_head = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._stack and self._stack[-1] == "script":
            self.scripts.append(data)
        if self._cell is not None:
            self.cells[self._cell] += data
        if self._row_head is not None:
            self._row_head += data


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    """Two copies of the session's tiny classifier run, the second with a changed lr, a hostile class name, a
    key only it has and a directory name that is markup; and a 1-epoch tiny DDPM run with its sample grid."""
    root = tmp_path_factory.mktemp("report")
    a, b = root / "a", root / ODD_DIR
    shutil.copytree(tiny_run, a)
    shutil.copytree(tiny_run, b)
    config = json.loads((b / "config.json").read_text())
    config["recipe"]["lr"] = 0.002
    config["class_names"][1] = HOSTILE
    config["note"] = "only in b"
    (b / "config.json").write_text(json.dumps(config))
    pytest.importorskip("diffusers")
    d = root / "ddpm"
    train(TrainConfig(model="unet_tiny", data="synthetic:16x1x16x16:4", epochs=1, batch_size=16, device="cpu",
                      out=str(d), model_kwargs={"base_chans": 8, "chan_mult": [1, 2], "norm_groups": 2},
                      overrides={"warmup_epochs": 0.0, "sample_steps": 2, "sample_count": 4, "precision": "fp32"}),
          log=None)
    return a, b, d


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "page.html"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return out


def _png_of(src):
    assert src.startswith("data:image/png;base64,"), src[:60]
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert data.startswith(PNG)
    with Image.open(io.BytesIO(data)) as im:
        im.load()   # decodes every pixel
        return data, im.format, im.size


def test_every_image_is_an_embedded_png_and_nothing_is_fetched(page, runs):
    parsed = Page(page.read_text())
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    # curves of 3 runs + the overlay, confusion matrices of the 2 classifiers, the DDPM run's one grid
    assert len(images) == 7
    decoded = []
    for attrs in images:
        data, fmt, (w, h) = _png_of(attrs["src"])
        scale = int(attrs["width"]) // w
        assert fmt == "PNG" and scale >= 1 and (int(attrs["width"]), int(attrs["height"])) == (w * scale, h * scale)
        decoded.append(data)
    assert (runs[2] / "samples" / "epoch_001.png").read_bytes() in decoded     # the grid as it is on disk
    # no other resource: no src/href but the images' data: URIs, no <link>, one inline script (ours)
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "iframe", "object", "embed")
        assert "href" not in attrs and ("src" not in attrs or tag == "img")
    assert parsed.scripts == [LOAD_SCRIPT]
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp.startswith("default-src 'none'; img-src data:;")


def _check_summary_cells(cells, runs):
    for i, run in enumerate(runs):
        summary = json.loads((run / "summary.json").read_text())
        keys = {k for (j, k, absent) in cells if j == i and not absent}
        assert keys == set(summary)
        for key, value in summary.items():
            text = cells[(i, key, False)]
            if isinstance(value, str):
                assert text == value
            else:   # the JSON text summary.json holds: parses back to the very value, of the same type
                back = json.loads(text)
                assert back == value and type(back) is type(value), (key, text, value)
    return True


def test_summary_table_numbers_are_summary_json_exactly(page, runs):
    cells = Page(page.read_text()).cells
    assert _check_summary_cells(cells, runs)
    assert cells[(0, "test_top1", False)] == repr(json.loads((runs[0] / "summary.json").read_text())["test_top1"])
    assert (2, "test_top1", True) in cells and (0, "samples", True) in cells   # the DDPM run has no top-1


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_config_diff_lists_exactly_the_differing_keys(page, runs):
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    assert [k for k, _ in config_diff(configs[:2])] == ["class_names", "recipe.lr", "note"]
    values = dict(config_diff(configs[:2]))
    assert values["recipe.lr"] == [0.001, 0.002] and values["note"][1] == "only in b"
    # the page's table: a key is listed iff its value is not the same in all three runs (absent counts)
    flat = [_flat(c) for c in configs]
    every = {k for f in flat for k in f}
    differing = {k for k in every if len({json.dumps(f.get(k, "<absent>"), sort_keys=True) for f in flat}) > 1}
    listed = Page(page.read_text()).config_keys
    assert len(listed) == len(set(listed)) and set(listed) == differing
    # numbers compare as JSON numbers, a bool is not a number, nested keys are dotted
    assert config_diff([{"a": 1, "b": True, "c": {"d": 1}}, {"a": 1.0, "b": 1, "c": {"d": 1}}]) == \
        [("b", [True, 1])]
    assert [k for k, _ in config_diff([{"c": {"d": 1}}, {"c": {"d": 2, "e": 3}}])] == ["c.d", "c.e"]


def test_strings_from_runs_are_escaped(page):
    text = page.read_text()
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<i>" not in text and ODD_DIR not in text
    parsed = Page(text)
    assert [t for t, _ in parsed.tags].count("script") == 1 and [t for t, _ in parsed.tags].count("i") == 0
    assert HOSTILE in parsed.texts                      # shown as text: a confusion-table header
    assert any(ODD_DIR in t for t in parsed.texts)      # the run's directory, as text


def test_confusion_matrix_counts_true_rows_against_predicted_columns(tiny_run):
    # a "model" that predicts the class written in each image's first pixel
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    images = predicted.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8).contiguous()
    ds = ImageDataset(images=images, labels=labels, classes=["a", "b", "c"], mean=(0.0,), std=(1 / 255,),
                      name="six")

    model = FirstPixel()
    m = confusion_matrix(model, ds, "cpu", ds.mean, ds.std, batch_size=4)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    # on the tiny run: trace / N is the top-1 that mixlab eval (and, one epoch, summary.json) reports
    from mixlab.report_page import read_run, run_confusion
    c = run_confusion(read_run(tiny_run), images=None)
    matrix = torch.tensor(c["matrix"])
    result = evaluate_run(tiny_run)
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert int(matrix.sum()) == result["n"] == summary["test_images"]
    assert 100.0 * matrix.trace().item() / matrix.sum().item() == pytest.approx(result["top1"]) == \
        pytest.approx(summary["test_top1"])
    from mixlab.data import load_dataset
    test = load_dataset(summary["data"], split="test", verbose=False)
    assert matrix.sum(1).tolist() == torch.bincount(test.labels, minlength=4).tolist()   # row i: class i's images


def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys):
    good = tmp_path / "good.html"
    archived = tmp_path / "archived"    # summary, metrics and config kept, weights not: a note, no matrix
    shutil.copytree(runs[0], archived, ignore=shutil.ignore_patterns("*.safetensors", "trainer_state.pt"))
    assert main(["report", str(archived), "--out", str(good)]) == 0
    before = good.read_bytes()
    assert b"no weights in the run directory" in before and before.count(b"<img ") == 1   # the curves
    capsys.readouterr()
    damaged = tmp_path / "damaged"
    shutil.copytree(runs[0], damaged)
    (damaged / "summary.json").write_text('{"model": "mixer_paper", ')
    no_summary = tmp_path / "unfinished"
    shutil.copytree(runs[0], no_summary)
    (no_summary / "summary.json").unlink()
    bad_grid = tmp_path / "bad_grid"
    shutil.copytree(runs[2], bad_grid)
    (bad_grid / "samples" / "epoch_001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    escaping = tmp_path / "escaping"      # summary.json pointing the page at a file outside the run
    shutil.copytree(runs[2], escaping)
    summary = json.loads((escaping / "summary.json").read_text())
    (escaping / "summary.json").write_text(json.dumps({**summary, "samples": "../bad_grid/samples/epoch_001.png"}))
    nan = tmp_path / "nan"                # a diverged or damaged checkpoint: never a matrix of nan logits
    shutil.copytree(runs[0], nan)
    weights = load_file(nan / "last.safetensors")   # the run's default weights (no --validation: last)
    next(iter(weights.values())).view(-1)[0] = float("nan")
    save_file(weights, nan / "last.safetensors")
    (tmp_path / "empty").mkdir()
    cases = [([str(tmp_path / "empty")], "is not a run directory"),
             ([str(tmp_path / "missing")], "does not exist"),
             ([str(runs[0]), str(damaged)], "summary.json is not valid JSON"),
             ([str(no_summary)], "has no summary.json"),
             ([str(bad_grid)], "epoch_001.png is not a readable image"),
             ([str(escaping)], "outside"),
             ([str(nan)], "last.safetensors holds non-finite weights"),
             ([str(runs[0]), str(runs[0])], "is given twice"),
             ([str(runs[0]), "--weights", "gone.safetensors"], "gone.safetensors (--no-confusion skips")]
    for argv, message in cases:
        for out in (good, tmp_path / "new.html"):
            assert main(["report", *argv, "--out", str(out)]) == 1
            err = capsys.readouterr().err
            assert err.startswith("mixlab report: error: ") and message in err and err.count("\n") == 1, err
    assert good.read_bytes() == before and not (tmp_path / "new.html").exists()
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "page.txt")]) == 1
    assert ".html" in capsys.readouterr().err and not (tmp_path / "page.txt").exists()
    assert not [p for p in tmp_path.iterdir() if ".mixlab-tmp-" in p.name]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser check needs /usr/bin/chromium: apt install chromium")
def test_the_page_in_headless_chromium(page, runs, tmp_path):
    """Chromium opens the page from disk; its DOM after the load event says every image decoded (the page's
    own script counts complete images with a natural width) and the table shows summary.json's numbers."""
    dom = subprocess.run([str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    parsed = Page(dom)
    body = next(a for t, a in parsed.tags if t == "body")
    assert body.get("data-images-total") == "7" and body.get("data-images-loaded") == "7", body
    for tag, attrs in parsed.tags:
        if tag == "img":
            assert int(attrs["data-natural-width"]) == _png_of(attrs["src"])[2][0]
    assert _check_summary_cells(parsed.cells, runs)
    assert [t for t, _ in parsed.tags].count("script") == 1 and HOSTILE in parsed.texts
