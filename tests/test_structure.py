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
