"""The package's structure (docs/ARCHITECTURE.md): `import mixlab` registers every model with mixlab and timm
without building one."""
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

BUILT_AT_IMPORT = """
import torch
built = []
original = torch.nn.Module.__init__
def counting(self, *args, **kwargs):
    built.append(type(self).__module__ + "." + type(self).__qualname__)
    original(self, *args, **kwargs)
torch.nn.Module.__init__ = counting
import timm   # timm's own import may build modules of its own; only mixlab's count
before = len(built)
import mixlab
assert len(mixlab.list_models()) > 40
import timm as t
assert "vit_paper" in t.list_models("vit_paper") and t.get_pretrained_cfg("affnet").first_conv == "stem.0"
print(len(built) - before, sorted(set(built[before:]))[:5])
"""


def test_import_builds_no_model():
    """Registration reads each model's static cfg; no nn.Module is constructed by `import mixlab`."""
    out = subprocess.run([sys.executable, "-c", BUILT_AT_IMPORT], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}).stdout.split(maxsplit=1)
    assert out[0] == "0", f"import mixlab built modules: {out[1]}"


# --- the import graph ---------------------------------------------------------------------------------------
# The floors of docs/ARCHITECTURE.md, lowest first: a module may import its own floor and those below, never one
# above (function-level imports included). `mixlab` itself is the public API over the models floor.
LAYERS = (
    ("base", ("mixlab.fileio", "mixlab.device")),
    ("building blocks", ("mixlab.layers", "mixlab.mixers", "mixlab.data", "mixlab.dense")),
    ("models", ("mixlab", "mixlab.registry", "mixlab.timm_models", "mixlab.models", "mixlab.rundir",
                "mixlab.checkpoint", "mixlab.predict", "mixlab.export", "mixlab.dense.model", "mixlab.dense.predict")),
    ("engine", ("mixlab.train", "mixlab.decision", "mixlab.bench", "mixlab.track")),
    ("applications", ("mixlab.dense.task", "mixlab.dense.segmentation", "mixlab.dense.detection", "mixlab.diffusion", "mixlab.analyze", "mixlab.reproduce", "mixlab.hub",
                      "mixlab.compare", "mixlab.report_page")),
    ("cli", ("mixlab.cli",)),
)


def _modules():
    """{dotted name: path} of every module under src/mixlab (a package by its __init__)."""
    found = {}
    for path in (SRC / "mixlab").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph():
    """{module: {the mixlab modules it imports}}, read with ast from every import statement, in functions too."""
    import ast
    modules = _modules()

    def owner(name):          # `from .x import y`: y is a submodule, else a name in x
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(owner(a.name) for a in node.names if a.name.split(".")[0] == "mixlab")
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
                if prefix.split(".")[0] != "mixlab":
                    continue
                targets.update(owner(f"{prefix}.{a.name}") for a in node.names)
        graph[name] = targets - {name}
    return graph


def layer_of(module):
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "mixlab" and module.startswith(prefix + ".")):
                best = rank
    assert best is not None, f"{module} belongs to no layer of LAYERS (add it there and in docs/ARCHITECTURE.md)"
    return best


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_imports_a_layer_above_its_own():
    graph = import_graph()
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in sorted(graph.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_the_graph_reader_sees_function_level_imports():
    """The walk is only as good as its reader: a function-level relative import is an edge."""
    graph = import_graph()
    assert "mixlab.diffusion.runs" in graph["mixlab.diffusion.task"]      # inside DenoisingTask.evaluate_saved
    assert "mixlab.timm_models" in graph["mixlab.registry"] and "mixlab.registry" not in graph["mixlab.timm_models"]
