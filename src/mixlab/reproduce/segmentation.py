"""The segmentation table kind: a backbone + DeepLabv3 per row, scored by final-epoch test mIoU beside the
published mIoU (`affnet-seg`: AFFNet-ET/T/base on ADE20K and Pascal VOC).

The grid is the runner's (dataset × model × seed), each an ordinary `mixlab train --task segmentation --head
deeplabv3` run (the table's `train_keys`) on a dense folder: the paper's dataset name resolves to a folder
found under --data-dir, $MIXLAB_DATA or ~/.cache/mixlab (`mixlab.dense.find_dense`). A row whose run has not
finished prints "unmeasured"; the plan (`--dry-run`) shows every row so, with the published number beside it.
The published numbers are AFFNet's README (microsoft/TokenMixers, "Adaptive Frequency Filters"; 256×256
inputs, ImageNet-pretrained backbones, 8 A100s; papers.md §3 and §7): a run here trains from scratch, so the
rows are compared, not claimed equal.
"""
from .kinds import TableKind

SOURCE = ("AFFNet README, microsoft/TokenMixers 'Adaptive Frequency Filters' (papers.md §3, §7): DeepLabv3, "
          "256x256, ImageNet-pretrained backbone")
PUBLISHED_MIOU = {("affnet_et", "ade20k"): 33.0, ("affnet_t", "ade20k"): 36.9, ("affnet", "ade20k"): 38.4,
                  ("affnet_et", "voc"): 76.1, ("affnet_t", "voc"): 77.8, ("affnet", "voc"): 80.5}
LABELS = {"affnet_et": "AFFNet-ET", "affnet_t": "AFFNet-T", "affnet": "AFFNet", "ade20k": "ADE20K",
          "voc": "Pascal VOC"}


def _mean(values):
    return sum(values) / len(values) if values else None


class SegmentationTable(TableKind):
    """Rows of mIoU (%) per (model, dataset) beside the published mIoU (module docstring)."""
    metric = "final-epoch test mIoU (%) of backbone + DeepLabv3, mean over seeds"

    @staticmethod
    def data_probe(data_dir):
        """A probe for the runner: raises when no folder for the paper's dataset is found."""
        def probe(name):
            from ..dense import find_dense
            find_dense(name, data_dir)
        return probe

    def _row(self, model, dataset, summaries):
        ours = [s["test_miou"] for s in summaries if s.get("completed") and s.get("test_miou") is not None]
        published = PUBLISHED_MIOU.get((model, dataset))
        mean = _mean(ours)
        return {"model": model, "dataset": dataset, "miou_mean": mean, "miou_per_seed": ours, "seeds": len(ours),
                "published": published, "published_source": SOURCE if published is not None else None,
                "diff": None if mean is None or published is None else mean - published,
                "status": "measured" if ours else "unmeasured"}

    def plan_rows(self):
        """Every (model, dataset) row of the table, measured or not, for the plan (`--dry-run`)."""
        from ..rundir import RunDir
        summaries = {}
        for run in self.job.runs:
            if run.status == "done":
                summaries.setdefault((run.model, run.dataset), []).append(RunDir(run.path).read_summary())
        rows = [self._row(m, d, summaries.get((m, d), [])) for d in self.job.spec.datasets for m in self.job.models]
        return {"rows": rows, "metric": self.metric}

    def rows(self, results, failed):
        return {"rows": [self._row(m, d, results.get((m, d), []))
                         for d in self.job.spec.datasets for m in self.job.models]}

    def claims(self, rows):
        """The paper's ordering on each dataset: ET < T < base in mIoU, checked where all three are measured."""
        claims = []
        for dataset in self.job.spec.datasets:
            got = {r["model"]: r["miou_mean"] for r in rows if r["dataset"] == dataset}
            for worse, better in (("affnet_et", "affnet_t"), ("affnet_t", "affnet")):
                a, b = got.get(better), got.get(worse)
                claims.append({"claim": f"{better} > {worse} on {dataset}",
                               "holds": None if a is None or b is None else a > b})
        return {"claims": claims}

    def markdown(self, report):
        lines = [f"# {report.get('title', 'affnet-seg')}", "", f"Metric: {self.metric}.", "",
                 "| backbone | dataset | published mIoU | ours mIoU | ours − published | seeds |",
                 "|---|---|---:|---:|---:|---:|"]
        lines += [format_row(r, "|") for r in report["rows"]]
        lines += ["", f"Published: {SOURCE}."]
        for c in report.get("claims", []):
            verdict = {True: "holds", False: "does not hold", None: "unmeasured"}[c["holds"]]
            lines.append(f"- {c['claim']}: {verdict}")
        for f in report.get("failed", []):
            lines.append(f"- failed: {f['model']} on {f['dataset']} seed {f['seed']}: {f['error']}")
        return "\n".join(lines) + "\n"


def format_row(row, sep=" "):
    """One row as text: "unmeasured" until its run finished."""
    ours = "unmeasured" if row["miou_mean"] is None else f"{row['miou_mean']:.1f}"
    diff = "" if row["diff"] is None else f"{row['diff']:+.1f}"
    published = "n/a" if row["published"] is None else f"{row['published']:.1f}"
    cells = [LABELS.get(row["model"], row["model"]), LABELS.get(row["dataset"], row["dataset"]), published, ours,
             diff, str(row["seeds"])]
    if sep == "|":
        return "| " + " | ".join(cells) + " |"
    return f"{cells[0]:<10} {cells[1]:<11} {cells[2]:>9} {cells[3]:>11} {cells[4]:>7} {cells[5]:>5}"
