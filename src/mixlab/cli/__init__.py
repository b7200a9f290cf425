"""`mixlab` command line: parsing and printing only; every verb calls the library.

Each verb lives in its own module with `add_parser(subparsers)` and `run(args) -> int`.
"""
import argparse
import importlib
import json
import sys

VERBS = ["models", "train", "eval", "sample", "demo", "compare", "bench", "reproduce", "sweep", "export", "predict", "analyze", "data",
         "report"]
_MODULES = {"models": "models", "train": "train", "eval": "train", "sample": "sample", "demo": "demo",
            "compare": "compare", "bench": "bench", "reproduce": "reproduce", "sweep": "sweep", "export": "export", "predict": "export",
            "analyze": "analyze", "data": "data", "report": "report"}


def _int_at_least(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what} integer, got {value}")
        return value
    return parse


positive_int = _int_at_least(1, "a positive")          # argparse types
nonnegative_int = _int_at_least(0, "a non-negative")


def json_object(text):
    """argparse type: a JSON object (model kwargs)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"depth\": 6}}', got {text!r}")
    return value


def trackers_arg(text):
    """argparse type for --log: tracker names, each installed (else one line naming the pip install)."""
    from ..track import parse_trackers
    try:
        return parse_trackers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_log_argument(parser):
    """--log tensorboard,mlflow,wandb on any verb that trains (train, sweep, reproduce, compare): pass
    `args.log` as TrainConfig(trackers=...)."""
    parser.add_argument("--log", type=trackers_arg, default=(), metavar="TRACKERS",
                        help="also log to experiment trackers, comma-separated: tensorboard (RUN/tensorboard), mlflow "
                             "($MLFLOW_TRACKING_URI), wandb (RUN/wandb, offline without an API key); pip install "
                             "'mixlab[track]'; a resumed run continues the same tracker run")


def add_compile_argument(parser, what="the model"):
    """--compile / --no-compile, default auto (None): TrainConfig(compile=args.compile), see train.autocompile."""
    import argparse
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help=f"torch.compile {what}'s training steps; default auto: a run with at least 30 "
                             "minutes of eager training left after its first epoch tries one compiled epoch "
                             "and keeps compiling if its steps are 3%% faster (recorded in summary.json)")


def parse_overrides(items):
    """`--set KEY=VALUE` items → {key: value}; a value is read as JSON (numbers, true/false, lists) or else
    kept as a string (`mixlab.train.recipes.parse_value`, as recipe files and sweeps read values)."""
    from ..train.recipes import parse_value
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = parse_value(value)
    return out


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to look, not the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    parser = OneLineParser(prog="mixlab", description="Vision token mixers: models, training, "
                           "benchmarks and paper reproduction.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"mixlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    seen = set()
    for verb in VERBS:
        mod_name = _MODULES[verb]
        mod = importlib.import_module(f".{mod_name}", __name__)
        if mod_name not in seen:
            mod.add_parser(sub)
            seen.add(mod_name)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:   # noqa: BLE001 (the CLI's last line: no traceback reaches a user)
        import os
        if os.environ.get("MIXLAB_DEBUG"):
            raise
        print(f"mixlab {args.verb}: error: {one_line(e)}", file=sys.stderr)
        return 1


# The optional extras (pyproject.toml) by the top-level module a missing import names: a missing one is the
# user's install, said as the pip line, never an internal error.
EXTRAS = {"diffusers": "diffusion", "torchmetrics": "diffusion", "torch_fidelity": "diffusion", "ray": "ray",
          "onnx": "export", "onnxruntime": "export", "onnxscript": "export", "huggingface_hub": "hub",
          "tensorboard": "track", "mlflow": "track", "wandb": "track", "scipy": "compare"}


def printable(text):
    """`text` with every non-printable character (ESC, CR, other control bytes) written as a Python escape,
    so an untrusted name (a folder name, a file name, a class) cannot send terminal control sequences."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def missing_extra(err):
    """The one-line 'pip install' message for an ImportError of an optional extra, else None."""
    if not isinstance(err, ImportError):
        return None
    text = " ".join(str(err).split())
    if "pip install" in text:   # mixlab's own message already names the install
        return text
    module = (getattr(err, "name", None) or "").split(".")[0]
    if module in EXTRAS:
        return f"{module} is not installed: pip install 'mixlab[{EXTRAS[module]}]'"
    return None


def one_line(err):
    """A user-facing line for an exception. mixlab's own errors (ValueError, FileNotFoundError, OSError such as
    a full disk, RuntimeError such as a diverged run) carry their message, and a missing optional extra its pip
    line; anything else is a bug and says so. Control characters are escaped (messages quote user names)."""
    text = " ".join(str(err).split()) or type(err).__name__
    extra = missing_extra(err)
    if extra:
        return printable(extra)[:500]
    if isinstance(err, (ValueError, OSError, RuntimeError)) and not isinstance(err, NotImplementedError):
        if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        return printable(text)[:500]
    return printable(f"internal error ({type(err).__name__}: {text[:300]}); please report it with the command, "
                     f"and run with MIXLAB_DEBUG=1 for the traceback")

if __name__ == "__main__":
    sys.exit(main())
