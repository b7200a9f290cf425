"""One self-contained HTML page for one or more runs (`mixlab report RUN [RUN…] --out page.html`).

    write_report(["runs/a", "runs/b"], "page.html")

The page holds, in this order:

    summary      every key of each run's summary.json, one row a key and one column a run; each value is the
                 JSON text summary.json holds (numbers as Python's json writes them, so the cell parses back
                 to the very float), strings as they are; rows whose values differ between runs are marked
    curves       per run, a PNG drawn from metrics.csv: losses, top-1 (classifiers) and the learning rate
                 against epoch; with several runs also one plot of every run's test metric
    confusion    per classifier run, the K × K matrix C[i, j] = images of true class i predicted as j,
                 computed now by evaluating the run's default weights (`rundir.default_weights`: last, or
                 best when a validation split chose it) on its test split at the run's
                 eval transform and precision (`ClassificationTask.load_saved`, `train.evaluate.
                 confusion_matrix`); a stratified subset of at most `images` test images keeps it cheap. A PNG
                 heat map, and for K ≤ 20 the counts as a table
    samples      per diffusion run, the sample grids its training wrote (RUN/samples/epoch_NNN.png, the last
                 `MAX_GRIDS`), embedded as they are on disk
    config       the keys of config.json (nested keys dotted: recipe.lr) whose values differ between the runs,
                 a key missing from a run counting as different; for one run, all its keys

Self-contained: every image is a `data:image/png;base64,…` URI and there are no links to load, and a
Content-Security-Policy meta tag (`default-src 'none'`, images from data: only, the one inline script allowed
by its SHA-256) makes a browser refuse any other resource or script. That script sets `data-images-loaded`
and `data-images-total` on <body> once the page has loaded (images complete with a natural width > 0), so a
headless browser's DOM dump says whether every image decoded. Every string taken from a run (paths, class
names, config values, summary strings) is HTML-escaped.

Everything is read and computed before anything is written: a directory that is not a run, a damaged
summary.json, config.json or metrics.csv, or an unreadable sample grid is a one-line `RunError` and no page
is written; the page itself is written atomically (`fileio.write_text`).
"""
import base64
import hashlib
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .fileio import pyplot, write_text
from .rundir import RunDir, RunError, default_weights, weights_label

MAX_GRIDS = 4           # sample grids embedded per diffusion run (the last ones)
TABLE_CLASSES = 20      # confusion matrices up to this many classes also appear as a table of counts
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ABSENT = object()       # a config key a run does not have

# Runs once the page has loaded: how many <img> decoded (complete, naturalWidth > 0) out of how many.
LOAD_SCRIPT = ('window.addEventListener("load",function(){var a=Array.prototype.slice.call(document.images);'
               'var ok=a.filter(function(i){return i.complete&&i.naturalWidth>0;});'
               'a.forEach(function(i){i.setAttribute("data-natural-width",i.naturalWidth);});'
               'document.body.setAttribute("data-images-total",a.length);'
               'document.body.setAttribute("data-images-loaded",ok.length);});')

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;
vertical-align:top;font-size:0.9em}td{font-family:ui-monospace,monospace;word-break:break-word;max-width:40em}
tr.differs td{background:#fff4d6}th{background:#f3f3f3}img{max-width:100%;height:auto}
figure{margin:0.5em 0 1.5em}figcaption{font-size:0.9em;color:#555}.note{color:#555;font-size:0.9em}"""


@dataclass
class RunInfo:
    """What the page shows of one run directory."""
    path: Path
    label: str
    config: dict
    summary: dict
    metrics: list
    task: str                  # classification | diffusion | the registered task name | unknown
    confusion: dict = None     # classifiers: {"matrix": [[…]], "classes", "n", "weights", "split", "dataset"}
    no_confusion: str = None   # classifiers: why there is no matrix
    grids: list = field(default_factory=list)   # diffusion: [(relative path, PNG bytes)]


@dataclass
class ReportResult:
    path: Path
    runs: int
    images: int
    bytes: int


def esc(value) -> str:
    """`value` as text safe in HTML element content and in quoted attributes (&, <, >, " and ' escaped)."""
    return html.escape(str(value), quote=True)


def _task(config, summary):
    """The task a run learned, as its model's registration names it (`mixlab.train.tasks`); for a model this
    process cannot name (a registered class from a module not imported), read from what summary.json holds."""
    from .registry import model_cfg
    try:
        return model_cfg(config["model"]).get("task", "classification")
    except ValueError:
        if "test_top1" in summary:
            return "classification"
        return "diffusion" if summary.get("samples") else "unknown"


def read_run(path, label=None) -> RunInfo:
    """A run directory's config.json, summary.json and metrics.csv, checked; a one-line RunError otherwise."""
    rd = RunDir(path)
    config = rd.read_config()
    summary = rd.read_summary()
    if summary.get("model") not in (None, config["model"]):
        raise RunError(f"{rd / 'summary.json'} is of model {summary.get('model')!r} but config.json of "
                       f"{config['model']!r}: the run directory is damaged")
    metrics = rd.read_metrics() if (rd / "metrics.csv").is_file() else []
    if metrics and "epoch" not in metrics[0]:
        raise RunError(f"{rd / 'metrics.csv'} has no epoch column: it is not a mixlab metrics table")
    return RunInfo(path=rd.path, label=label or str(path), config=config, summary=summary, metrics=metrics,
                   task=_task(config, summary))


def run_labels(run_dirs):
    """Short names for the runs' columns: each path relative to the folder all of them share (one run: its
    folder's name), or the paths as given when that leaves a name empty."""
    import os
    paths = [Path(d).resolve() for d in run_dirs]
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    labels = [str(p.relative_to(root)) for p in paths]
    return labels if all(labels) and len(set(labels)) == len(labels) and "." not in labels else \
        [str(d) for d in run_dirs]


def sample_grids(run: RunInfo, limit=MAX_GRIDS):
    """[(relative path, PNG bytes)] of the last `limit` sample grids a diffusion run wrote (samples/epoch_*.png,
    and the grid summary.json names), each checked to decode as a PNG."""
    from PIL import Image
    folder = run.path / "samples"
    names = sorted(p.name for p in folder.glob("epoch_*.png")) if folder.is_dir() else []
    chosen = [f"samples/{n}" for n in names[-limit:]]
    named = run.summary.get("samples")
    if isinstance(named, str) and named not in chosen:
        # summary.json is data from the run: it may only name a file of the run's own samples folder
        if not (run.path / named).resolve().is_relative_to(folder.resolve()):
            raise RunError(f"{run.path / 'summary.json'} names samples {named!r} outside {folder}: the run "
                           f"directory is damaged")
        chosen = (chosen + [named])[-limit:]
    out = []
    for rel in chosen:
        p = run.path / rel
        try:
            data = p.read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
                fmt = im.format
        except FileNotFoundError:
            raise RunError(f"{p} does not exist (summary.json names it)") from None
        except Exception as e:   # noqa: BLE001 (Pillow raises many kinds on a damaged file: all one line)
            raise RunError(f"{p} is not a readable image ({type(e).__name__}: {str(e)[:200]})") from None
        if fmt != "PNG" or not data.startswith(PNG_SIGNATURE):
            raise RunError(f"{p} is not a PNG file")
        out.append((rel, data))
    return out


def run_confusion(run: RunInfo, images=2000, weights=None, device="cpu", data_dir=None, batch_size=500) -> dict:
    """The confusion matrix of a classifier run's default (`rundir.default_weights`, or `weights`) checkpoint on at most `images`
    (a class-stratified subset; None: all) of its test split (see `mixlab.train.evaluate.confusion_matrix`)."""
    from .train.classification import ClassificationTask
    from .train.evaluate import confusion_matrix

    rd = RunDir(run.path)
    config = rd.read_config(need=("mean", "std", "input_size"))
    model, ds, precision, weights_file = ClassificationTask.load_saved(
        rd, config, split="test", weights=weights, device=device, data_dir=data_dir, subset=images)
    matrix = confusion_matrix(model, ds, precision.device, config["mean"], config["std"], batch_size=batch_size,
                              precision=precision)
    names = config.get("class_names")
    classes = list(names) if isinstance(names, list) and len(names) == len(matrix) else list(ds.classes)
    return {"matrix": matrix.tolist(), "classes": [str(c) for c in classes], "n": int(matrix.sum()),
            "weights": weights_file, "split": "test", "dataset": ds.name, "precision": precision.name}


def _flatten(obj, prefix=""):
    """Nested dicts as {"recipe.lr": 0.001, …}; lists and scalars are values."""
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(configs):
    """[(dotted key, [value or ABSENT per config])] for every key whose values are not the same in all of
    `configs` (a key missing from some counts as different), in the order the keys first appear. Values are
    compared as JSON values (1 == 1.0, as JSON cannot tell them apart; True is not 1)."""
    flat = [_flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)   # noqa: E731 (bool vs int stays apart)
    diff = []
    for key in keys:
        values = [f.get(key, ABSENT) for f in flat]
        texts = {("<absent>" if v is ABSENT else canon(v)) for v in values}
        floats = {float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)}
        same_number = len(floats) == 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values)
        if len(texts) > 1 and not same_number:
            diff.append((key, values))
    return diff


def value_text(value) -> str:
    """A summary or config value as the page shows it: a string as it is, anything else as its JSON text
    (numbers exactly as json writes them: the shortest text that reads back as the same float)."""
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


# --- images ---------------------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buf.getvalue()


def png_size(data: bytes):
    """(width, height) from a PNG's IHDR chunk (bytes 16-24, big-endian)."""
    if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _epoch_axis(ax, epochs):
    """Whole epochs on the x axis: each one marked when there are few, else integer ticks."""
    from matplotlib.ticker import MaxNLocator
    if 0 < len(set(epochs)) <= 12:
        ax.set_xticks(sorted({int(e) for e in epochs}))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _text_kwargs():
    # class names and labels come from runs: never read as mathtext ($…$) or TeX
    return {"parse_math": False}


def curves_png(run: RunInfo) -> bytes:
    """Loss (train/test and the live weights' with EMA), top-1 when the run has it, and the learning rate
    against epoch, from metrics.csv."""
    plt = pyplot()
    rows = run.metrics
    cols = rows[0].keys()
    panels = [("loss", [c for c in ("train_loss", "test_loss", "live_test_loss") if c in cols])]
    if "test_top1" in cols:
        panels.append(("top-1 (%)", [c for c in ("train_top1", "test_top1", "live_test_top1") if c in cols]))
    if "lr" in cols:
        panels.append(("learning rate", ["lr"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, (title, columns) in zip(axes[0], panels):
        for c in columns:
            ax.plot(epochs, [r[c] for r in rows], marker=".", label=c)
        _epoch_axis(ax, epochs)
        ax.set_title(title, **_text_kwargs())
        ax.grid(alpha=0.3)
        if len(columns) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def overlay_png(runs) -> bytes:
    """Every run's test metric against epoch in one plot: test top-1 when all runs classify, else test loss."""
    plt = pyplot()
    column = "test_top1" if all(r.metrics and "test_top1" in r.metrics[0] for r in runs) else "test_loss"
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for r in runs:
        if r.metrics and column in r.metrics[0]:
            ax.plot([m["epoch"] for m in r.metrics], [m[column] for m in r.metrics], marker=".", label=r.label)
    _epoch_axis(ax, [m["epoch"] for r in runs for m in r.metrics])
    ax.set_ylabel(column)
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    return _png(fig)


def confusion_png(confusion: dict) -> bytes:
    """The matrix as a heat map (true class down, predicted across); counts written in for K ≤ 20 and class
    names as tick labels for K ≤ 40."""
    import numpy as np
    plt = pyplot()
    m = np.asarray(confusion["matrix"])
    k = len(m)
    size = min(2.5 + 0.45 * k, 12)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if k <= 40:
        names = [c[:18] for c in confusion["classes"]]
        ax.set_xticks(range(k), names, rotation=90, fontsize=7, **_text_kwargs())
        ax.set_yticks(range(k), names, fontsize=7, **_text_kwargs())
    if k <= TABLE_CLASSES:
        top = m.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return _png(fig)


def img_tag(data: bytes, alt: str, min_width=0) -> str:
    """An <img> whose source is the PNG itself, as a base64 data: URI, shown at its own size or, when that is
    narrower than `min_width`, at the smallest whole multiple reaching it, pixels kept sharp (sample grids of
    16-px images)."""
    w, h = png_size(data)
    scale = max(1, -(-min_width // w)) if w else 1
    style = ' style="image-rendering:pixelated"' if scale > 1 else ""
    return (f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" width="{w * scale}" '
            f'height="{h * scale}"{style} alt="{esc(alt)}">')


# --- the page -------------------------------------------------------------------------------------------------
def _summary_table(runs) -> str:
    keys = list(dict.fromkeys(k for r in runs for k in r.summary))
    head = "".join(f'<th data-run="{i}">{esc(r.label)}</th>' for i, r in enumerate(runs))
    rows = []
    for key in keys:
        values = [r.summary.get(key, ABSENT) for r in runs]
        differs = len(runs) > 1 and len({json.dumps(v, sort_keys=True, default=str) if v is not ABSENT else "<absent>"
                                         for v in values}) > 1
        cells = "".join(f'<td data-run="{i}" data-key="{esc(key)}"{" data-absent" if v is ABSENT else ""}>'
                        f'{esc(value_text(v))}</td>' for i, v in enumerate(values))
        mark = ' class="differs"' if differs else ""
        rows.append(f'<tr{mark}><th>{esc(key)}</th>{cells}</tr>')
    return (f'<table id="summary-table"><thead><tr><th>summary.json</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _confusion_section(run: RunInfo) -> str:
    c = run.confusion
    m = c["matrix"]
    correct = sum(m[i][i] for i in range(len(m)))
    top1 = 100.0 * correct / c["n"] if c["n"] else float("nan")
    parts = [f'<h3>{esc(run.label)}</h3>',
             f'<p class="note">{esc(weights_label(run.path, c["weights"]))} on {c["n"]} {esc(c["dataset"])} {esc(c["split"])} images '
             f'({esc(c["precision"])}); rows: true class, columns: predicted; top-1 of these images '
             f'{top1:.2f} % ({correct}/{c["n"]}).</p>',
             f'<figure>{img_tag(confusion_png(c), "confusion matrix of " + run.label)}</figure>']
    if len(m) <= TABLE_CLASSES:
        head = "".join(f"<th>{esc(n)}</th>" for n in c["classes"])
        body = "".join(f"<tr><th>{esc(n)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                       for n, row in zip(c["classes"], m))
        parts.append(f'<table class="confusion" data-run="{esc(run.label)}"><thead><tr><th>true \\ predicted</th>'
                     f'{head}</tr></thead><tbody>{body}</tbody></table>')
    return "".join(parts)


def _config_section(runs) -> str:
    if len(runs) == 1:
        items = [(k, [v]) for k, v in _flatten(runs[0].config).items()]
        intro = f"<p class=\"note\">One run: every key of its config.json ({len(items)}).</p>"
    else:
        items = config_diff([r.config for r in runs])
        total = len(dict.fromkeys(k for r in runs for k in _flatten(r.config)))
        intro = (f'<p class="note">{len(items)} of {total} config.json keys differ between the runs'
                 f'{"" if items else ": the configurations are identical"}.</p>')
    head = "".join(f'<th data-run="{i}">{esc(r.label)}</th>' for i, r in enumerate(runs))
    rows = "".join(f'<tr><th>{esc(k)}</th>' + "".join(f"<td>{esc(value_text(v))}</td>" for v in values) + "</tr>"
                   for k, values in items)
    table = (f'<table id="config-diff"><thead><tr><th>config.json</th>{head}</tr></thead><tbody>{rows}</tbody>'
             f'</table>') if items else ""
    return intro + table


def render_page(runs, title=None, generated=None) -> str:
    """The whole page as one string (see the module docstring)."""
    from . import __version__
    title = title or "mixlab report: " + ", ".join(r.label for r in runs)
    generated = generated or time.strftime("%Y-%m-%d %H:%M:%S %Z")
    script_hash = base64.b64encode(hashlib.sha256(LOAD_SCRIPT.encode()).digest()).decode("ascii")
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f'<title>{esc(title)}</title><style>{STYLE}</style></head>',
           '<body data-images-loaded="pending">', f'<h1>{esc(title)}</h1>',
           f'<p class="note">Written by mixlab {esc(__version__)} on {esc(generated)} from '
           f'{len(runs)} run director{"y" if len(runs) == 1 else "ies"}: '
           + ", ".join(f"<code>{esc(r.path)}</code>" for r in runs) + '.</p>',
           '<section id="summary"><h2>Summary</h2>', _summary_table(runs), '</section>',
           '<section id="curves"><h2>Training curves</h2>']
    if len(runs) > 1:
        out.append(f'<figure>{img_tag(overlay_png(runs), "test metric of every run")}'
                   f'<figcaption>every run\'s test metric against epoch</figcaption></figure>')
    for r in runs:
        if r.metrics:
            out.append(f'<figure>{img_tag(curves_png(r), "training curves of " + r.label)}'
                       f'<figcaption>{esc(r.label)}: metrics.csv, {len(r.metrics)} epoch(s)</figcaption></figure>')
        else:
            out.append(f'<p class="note">{esc(r.label)}: no metrics.csv rows.</p>')
    out.append('</section>')
    classifiers = [r for r in runs if r.confusion or r.no_confusion]
    if classifiers:
        out.append('<section id="confusion"><h2>Confusion matrices</h2>')
        out += [_confusion_section(r) if r.confusion else
                f'<h3>{esc(r.label)}</h3><p class="note">{esc(r.no_confusion)}.</p>' for r in classifiers]
        out.append('</section>')
    diffusion = [r for r in runs if r.grids]
    if diffusion:
        out.append('<section id="samples"><h2>Samples</h2>')
        for r in diffusion:
            out.append(f'<h3>{esc(r.label)}</h3>')
            out += [f'<figure>{img_tag(data, r.label + " " + rel, min_width=256)}<figcaption>{esc(rel)}</figcaption></figure>'
                    for rel, data in r.grids]
        out.append('</section>')
    out += ['<section id="config"><h2>Configuration</h2>', _config_section(runs), '</section>',
            f'<script>{LOAD_SCRIPT}</script>', '</body></html>', '']
    return "\n".join(out)


def write_report(run_dirs, out, images=2000, weights=None, device="cpu", data_dir=None, title=None,
                 confusion=True) -> ReportResult:
    """Read every run, compute its confusion matrix (classifiers, at most `images` test images; 0 or None: the
    whole split; `confusion=False`: none, nothing is evaluated) or collect its sample grids (diffusion), then
    write the page to `out` atomically. A classifier run holding no weights (an archived run) gets a note
    instead of a matrix; `weights` named but missing is an error."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must name an .html file, got {out}")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a folder")
    if not run_dirs:
        raise ValueError("give at least one run directory")
    seen = {}
    for d in run_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise ValueError(f"{d} is given twice (as {seen[key]})")
        seen[key] = d
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 0):
        raise ValueError(f"images must be a non-negative integer (0: the whole test split), got {images!r}")
    runs = [read_run(d, label) for d, label in zip(run_dirs, run_labels(run_dirs))]   # all checked first
    for r in runs:
        if r.task == "classification" and confusion:
            default = default_weights(r.path)
            if weights is None and not (r.path / default).is_file():
                # an archived run (summary, metrics, config kept; weights not): the page says so
                r.no_confusion = f"no weights in the run directory ({default}, its default weights): no confusion matrix"
            else:
                try:
                    r.confusion = run_confusion(r, images=images or None, weights=weights, device=device,
                                                data_dir=data_dir)
                except (OSError, ValueError) as e:   # weights or test split unusable: say which run, and the way out
                    text = " ".join(str(e).split())[:400] or type(e).__name__
                    raise RunError(f"{r.label}: no confusion matrix: {text} (--no-confusion skips the "
                                   f"evaluation)") from None
        elif r.task == "diffusion":
            r.grids = sample_grids(r)
    page = render_page(runs, title=title)
    write_text(out, page)
    return ReportResult(path=out, runs=len(runs), images=page.count("<img "), bytes=len(page.encode()))
