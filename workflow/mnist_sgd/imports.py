"""What a Python file of this project imports, read from its source without running it.

The workflow digests the package modules a rule's script imports, so that editing one reruns
exactly the rules that use it; the tests check that each rule's conda environment holds the
third-party packages it imports.
"""

import ast
import functools
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The modules that say only where and how a job runs (the warm worker, its job preamble, the GPU locks,
# this scan): no number depends on them, so the code digests leave them out and editing them retrains
# nothing.
EXECUTION = frozenset({"worker", "job", "private_dir", "gpus", "host", "imports"})


def imports(path):
    """(the mnist_sgd modules `path` imports, transitively, as file stems with `__init__` for the package
    itself; the top-level names of the third-party modules those files import)."""
    modules, third_party = set(), set()
    pending = [Path(path)]
    while pending:
        for name in _imported_names(pending.pop().read_text()):
            top, _, stem = name.partition(".")
            if top == "mnist_sgd":
                stem = stem or "__init__"
                if stem not in modules:
                    modules.add(stem)
                    pending.append(PACKAGE / f"{stem}.py")
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    return modules, third_party


@functools.cache
def _imported_names(source):
    """The module names a file's `source` imports (`mnist_sgd.x` for the package's own), each source
    parsed once per process: planning asks for every rule's script, and the scripts share their modules."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # level 1: `from .x import y` inside the package
            module = node.module if node.level == 0 else ".".join(filter(None, ("mnist_sgd", node.module)))
            names.append(module)
            if module == "mnist_sgd":  # `from mnist_sgd import plots`: the names that are its modules
                names += [f"{module}.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists()]
    return tuple(names)
