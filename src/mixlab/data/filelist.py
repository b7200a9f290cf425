"""A dataset given as a list of image files with their labels.

Format, by the list file's suffix:
  .csv   comma-separated `path,label[,split]`, parsed with Python's csv module (quoting allowed)
  .tsv   the same with tabs
  .txt   `path label` per line, split at the last run of whitespace (the Caffe/ImageNet list style)
A first line whose first two fields are `path` and `label` is a header. Relative paths are relative to the
list file's folder. Blank lines and lines starting with `#` are skipped.

Labels: when every label is an integer, class k is label k (classes "0" … str(max)); otherwise class ids
follow the sorted label names, as ImageFolder's sorted folder names do.

Splits: a third column `split` (train, test, val, valid, validation) selects rows; without it, a list whose
name contains "train" finds its test list by replacing that word with test/val/valid/validation (e.g.
`train.csv` → `test.csv`); otherwise every split is the same list (said in the source line).
"""
import csv
import re
from pathlib import Path

SUFFIXES = (".csv", ".tsv", ".txt")
_TEST_NAMES = ("test", "val", "valid", "validation")


def is_file_list(path):
    path = Path(path)
    return path.suffix.lower() in SUFFIXES and path.is_file()


def _rows(path):
    """[(line number, path, label, split or None)] of a list file; one-line errors for malformed lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the file list ({e})") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        fields = [(n, re.split(r"\s+(?=\S+$)", line)) for n, line in lines if line and not line.startswith("#")]
    else:
        reader = csv.reader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        fields = []
        try:
            for n, row in enumerate(reader, 1):
                if row and any(f.strip() for f in row) and not row[0].lstrip().startswith("#"):
                    fields.append((n, [f.strip() for f in row]))
        except csv.Error as e:   # e.g. a field over csv.field_size_limit(), an unclosed quote
            raise ValueError(f"{path}:{reader.line_num}: not a {suffix[1:]} file list line ({e})") from None
    if fields and [f.lower() for f in fields[0][1][:2]] == ["path", "label"]:
        fields = fields[1:]
    out = []
    for n, f in fields:
        if len(f) not in (2, 3) or not f[0] or not f[1]:
            raise ValueError(f"{path}:{n}: expected 'path{',' if suffix == '.csv' else ' '}label' "
                             f"(and optionally a split column), got {f!r}")
        out.append((n, f[0], f[1], f[2].lower() if len(f) == 3 else None))
    if not out:
        raise ValueError(f"{path}: the file list holds no images")
    return out


def _companion(path, split):
    """The test list beside a train list (`train.csv` → `test.csv` / `val.csv` …), or None."""
    path = Path(path)
    if split == "train" or "train" not in path.name:
        return None
    for name in _TEST_NAMES:
        other = path.with_name(path.name.replace("train", name))
        if other.is_file():
            return other
    return None


# Integer labels name classes 0 … max, so the largest decides how many classes (and how wide the model's head)
# there are; ImageNet-21k has 21,841. Beyond this a label is a typo or an attack that would exhaust memory.
MAX_CLASSES = 100_000


def _classes(labels, path):
    if all(re.fullmatch(r"\d+", y) for y in labels):
        top = max(labels, key=lambda y: (len(y.lstrip("0")), y.lstrip("0")))   # no int() of a 10,000-digit label
        if len(top.lstrip("0")) > 6 or int(top) >= MAX_CLASSES:
            shown = top if len(top) <= 20 else top[:20] + "…"
            raise ValueError(f"{path}: integer label {shown} is too large (integer labels name classes 0 … max, at "
                             f"most {MAX_CLASSES:,} of them); renumber the labels or use class names")
        return [str(k) for k in range(int(top) + 1)], lambda y: int(y)
    names = sorted(set(labels))
    ids = {c: i for i, c in enumerate(names)}
    return names, lambda y: ids[y]


def read_file_list(path, split="train"):
    """-> (samples [(absolute path, label id)], classes, note) for `split` of the list at `path`.

    Class ids come from the train rows (the whole list when it has no split column, the train list when
    the test list is a companion file); a test label the train rows lack is an error.
    """
    path = Path(path)
    rows = _rows(path)
    has_split = any(r[3] is not None for r in rows)
    note = ""
    if has_split:
        bad = sorted({r[3] for r in rows} - {"train", *_TEST_NAMES})
        if bad or any(r[3] is None for r in rows):
            raise ValueError(f"{path}: the split column must be train, test, val, valid or validation on every "
                             f"line, got {bad[0] if bad else 'an empty value'}")
        train_rows = [r for r in rows if r[3] == "train"]
        wanted = ("train",) if split == "train" else _TEST_NAMES
        chosen = [r for r in rows if r[3] in wanted]
        source_path = path
    else:
        train_rows = rows
        other = _companion(path, split)
        if split != "train" and other is not None:
            chosen, source_path = _rows(other), other
        else:
            chosen, source_path = rows, path
            if split != "train":
                note = "no test list: every split is the same images"
    if not chosen:
        raise ValueError(f"{path}: no {split} rows")
    classes, to_id = _classes([r[2] for r in train_rows], path)
    known = set(classes)
    samples = []
    for n, p, y, _ in chosen:
        if y not in known:
            raise ValueError(f"{source_path}:{n}: label {y!r} is not among the train labels")
        file = Path(p) if Path(p).is_absolute() else source_path.parent / p
        samples.append((str(file), to_id(y)))
    if len(classes) < 2:
        raise ValueError(f"{path}: a file list needs at least two classes to classify, found {len(classes)}")
    return samples, classes, f"{source_path} (file list{'; ' + note if note else ''})"
