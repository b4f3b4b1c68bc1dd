"""The layout's rules, read from the source: the core imports only torch, and nothing in
the library imports the application."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import contrastkit

PACKAGE = Path(contrastkit.__file__).parent
CORE = (
    "_candidates",
    "distances",
    "distributed",
    "functional",
    "losses",
    "mining",
    "_tiled",
    "_validation",
    "_version",
)
# the core's own modules, and data.sampling, which the core's users take with it
TORCH_ONLY = [PACKAGE / f"{name}.py" for name in CORE] + [
    PACKAGE / "data" / name for name in ("sampling.py", "collate.py", "augment.py")
]


def _imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", TORCH_ONLY, ids=lambda p: p.name)
def test_the_core_imports_only_torch_and_itself(path: Path) -> None:
    outside = {
        name
        for name in _imported(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ("torch", "contrastkit")
    }
    inside = {
        name
        for name in _imported(path)
        if name.startswith("contrastkit.")
        and name.split(".")[1] not in CORE
        and name != "contrastkit.data.sampling"
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"
    assert not inside, f"{path.name} imports {sorted(inside)} beyond the core"


LIBRARY = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "app" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_in_the_library_imports_the_application(path: Path) -> None:
    app = {name for name in _imported(path) if name.startswith("contrastkit.app")}
    assert not app, f"{path.relative_to(PACKAGE)} imports {sorted(app)}"


def test_import_contrastkit_loads_nothing_heavy() -> None:
    code = (
        "import sys, contrastkit\n"
        "heavy = [m for m in ('torch', 'numpy', 'sklearn', 'matplotlib', 'PIL') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_the_losses_load_without_the_app_extra() -> None:
    code = (
        "import sys\n"
        "for name in ('sklearn', 'matplotlib', 'PIL'):\n"
        "    sys.modules[name] = None  # an import of it now fails\n"
        "import torch, contrastkit\n"
        "from contrastkit import ContrastiveLoss, Trainer, mining, training\n"
        "from contrastkit.data import PairDataset\n"
        "from contrastkit.models import SiameseNetwork\n"
        "loss = ContrastiveLoss()(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([1, 0]))\n"
        "print(float(loss))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert float(out) == pytest.approx(0.75)
