"""The human-facing files of a run directory, all derived from the committed trainer state and each written
atomically: last/best.safetensors, metrics.csv (one row an epoch), steps.csv (loss and lr per step),
summary.json and curves.png (loss and top-1 against epoch).

curves.png is redrawn at a run's last epoch and otherwise at most every CURVES_SECONDS: drawing it costs
about a second of a CPU (matplotlib's layout), more than a whole epoch of a small run, and between two
draws it only shows a progress picture of what metrics.csv already holds exactly."""
import csv
import io
import time
from ..fileio import pyplot, save_figure
from ..rundir import BEST, CURVES, LAST, METRICS, STEPS, SUMMARY

# seconds: the whole epoch (training pass + evaluation); train_pass_seconds: the training pass alone.
METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "seconds",
                 "train_pass_seconds")
CURVES_SECONDS = 30.0


class CurvesClock:
    """Whether curves.png is due: at the last epoch, or CURVES_SECONDS after the previous draw (or the run's start)."""

    def __init__(self, every=CURVES_SECONDS):
        self.every, self.drawn_at = every, time.monotonic()

    def due(self, final):
        now = time.monotonic()
        if final or now - self.drawn_at >= self.every:
            self.drawn_at = now
            return True
        return False


def _csv_text(fields, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items() if k in fields})
    return buf.getvalue()


def write_outputs(rundir, eval_model, history, summary, best_now, fields=METRIC_FIELDS, curves=True):
    """The derived files of a `RunDir` after a committed epoch (curves.png only when `curves`)."""
    rundir.write_weights(LAST, eval_model)
    if best_now:
        rundir.write_weights(BEST, eval_model)
    rundir.write_text(METRICS, _csv_text(fields, history["rows"]))
    steps = [{"step": i + 1, "lr": lr, "loss": loss}
             for i, (lr, loss) in enumerate(zip(history["step_lr"], history["step_loss"]))]
    rundir.write_text(STEPS, _csv_text(("step", "lr", "loss"), steps))
    rundir.write_json(SUMMARY, summary)
    if curves:
        plot_curves(rundir / CURVES, history["rows"], title=f"{summary['model']} on {summary['dataset']}")


def plot_curves(path, rows, title=""):
    """Loss (train, test) and, for classifiers, top-1 (train, test) against epoch, side by side."""
    if not rows:
        return
    from matplotlib.ticker import MaxNLocator
    plt = pyplot()

    epochs = [r["epoch"] for r in rows]
    accuracy = "test_top1" in rows[0]
    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(9 if accuracy else 5, 3.5), squeeze=False)
    ax_loss = axes[0][0]
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], marker=".", label=split)
        if accuracy:
            axes[0][1].plot(epochs, [r[f"{split}_top1"] for r in rows], marker=".", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if accuracy:
        axes[0][1].set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def print_row(row, epochs):
    train_top1 = f" top-1 {row['train_top1']:6.2f}%" if "train_top1" in row else ""
    test_top1 = f" top-1 {row['test_top1']:6.2f}%" if "test_top1" in row else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f}"
            f"{train_top1}  test loss {row['test_loss']:.4f}{test_top1}  {row['seconds']:.1f}s")
