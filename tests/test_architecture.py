"""The package's floors (docs/architecture.md): each sub-package imports only those below it, no module
outgrows a reader's sitting, and planning stays free of the heavy libraries."""

import subprocess
import sys

import pytest

from conftest import REPO
from mnist_sgd.execution.digests import PACKAGE, imports

# Lowest first: a module may import its own sub-package's modules and those of the floors below.
FLOORS = ["study", "execution", "data", "training", "analysis", "figures"]
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)
MAX_LINES = 350


def floor(key):
    return FLOORS.index(key.split("/")[0]) if "/" in key else -1  # the package's own __init__: its version


@pytest.mark.parametrize("module", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_a_module_imports_only_its_floor_and_those_below(module):
    own = floor(str(module.relative_to(PACKAGE)))
    modules, _ = imports(module)
    above = sorted(key for key in modules if floor(key) > own)
    assert not above, f"{module.relative_to(PACKAGE)} imports {above}, which sit above it ({FLOORS})"


def test_every_module_of_the_package_sits_on_a_floor_and_none_is_long():
    assert {p.parent.name for p in MODULES} == set(FLOORS)
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_planning_imports_none_of_torch_torchvision_matplotlib_and_pandas():
    """What common.smk and the other rule files import, in a fresh process."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'workflow')!r})\n"
        "import mnist_sgd.execution.host, mnist_sgd.execution.digests, mnist_sgd.study.config\n"
        "import mnist_sgd.study.layout, mnist_sgd.study.records, mnist_sgd.study.plan, mnist_sgd.study.targets\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
