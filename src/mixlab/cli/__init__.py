"""`mixlab` command line: parsing and printing only; every verb calls the library.

Each verb lives in its own module with `add_parser(subparsers)` and `run(args) -> int`.
"""
import argparse
import importlib
import json
import sys

VERBS = ["models", "train", "eval", "demo", "bench", "reproduce", "export", "predict", "analyze"]
_MODULES = {"models": "models", "train": "train", "eval": "train", "demo": "demo", "bench": "bench",
            "reproduce": "reproduce", "export": "export", "predict": "export", "analyze": "analyze"}


def parse_overrides(items):
    """`--set KEY=VALUE` items → {key: value}; a value is read as JSON (numbers, true/false, lists) or else
    kept as a string."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_parser():
    parser = argparse.ArgumentParser(prog="mixlab", description="Vision token mixers: models, training, "
                                     "benchmarks and paper reproduction.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"mixlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    seen = set()
    for verb in VERBS:
        mod_name = _MODULES[verb]
        try:
            mod = importlib.import_module(f".{mod_name}", __name__)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(f"{__name__}.{mod_name}"):
                continue   # verb not built yet
            raise
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
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Bad input is the user's to fix: one line, no traceback (MIXLAB_DEBUG=1 shows it).
        import os
        if os.environ.get("MIXLAB_DEBUG"):
            raise
        print(f"mixlab {args.verb}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
