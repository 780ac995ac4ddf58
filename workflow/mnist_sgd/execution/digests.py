"""What a Python file of this project imports, read from its source without running it.

The workflow digests the package modules a rule's script imports, so that editing one reruns
exactly the rules that use it; the tests check that each rule's conda environment holds the
third-party packages it imports. Modules are found where they are on disk, in sub-packages too: a
module moved to another folder is followed, and a name that is no module (a function imported from
the package) is no file to read.
"""

import ast
import functools
import hashlib
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
# The sub-package that says only where and how a job runs (the warm worker, its job preamble, devices,
# this scan): no number depends on it, so the code digests leave it out and editing it retrains nothing.
EXECUTION = "execution/"


def imports(path):
    """(the mnist_sgd modules `path` imports, transitively, each as its key: its path under the package
    without `.py`, such as `sgd`, `__init__` for the package itself, `figures/run` or `figures/__init__`
    for a sub-package's; the top-level names of the third-party modules those files import).

    A module's parent packages count too: importing it runs their `__init__.py`."""
    modules, third_party = set(), set()
    pending = [Path(path)]
    while pending:
        file = pending.pop()
        for name in _imported_names(file.read_text(), _package_of(file)):
            top = name.partition(".")[0]
            if top == "mnist_sgd":
                for key in _module_files(name):
                    if key not in modules:
                        modules.add(key)
                        pending.append(PACKAGE / f"{key}.py")
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    return modules, third_party


def _package_of(file):
    """The dotted package a file of the package is in (for its relative imports); None outside it."""
    try:
        parts = Path(file).resolve().parent.relative_to(PACKAGE).parts
    except ValueError:
        return None
    return ".".join(("mnist_sgd", *parts))


def _module_files(name):
    """The keys of the files importing module `name` (`mnist_sgd.x.y`) runs: each sub-package's
    `__init__.py` on the way, and the module's own file; none of its own if `name` is no module. The
    package's own `__init__` (its version) counts only where it is imported by name, as `mnist_sgd`."""
    parts = name.split(".")[1:]
    keys = [] if parts else ["__init__"]
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        if (PACKAGE / path / "__init__.py").is_file():
            keys.append(f"{path}/__init__")
        elif depth == len(parts) and (PACKAGE / f"{path}.py").is_file():
            keys.append(path)
        else:
            break
    return keys


@functools.cache
def _imported_names(source, package):
    """The module names a file's `source` imports (`mnist_sgd.x` for the package's own), its relative
    imports read from `package`; each source parsed once per process: planning asks for every rule's
    script, and the scripts share their modules."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module
            else:  # `from .x import y` (level 1) or `from ..x import y` (level 2) inside the package
                base = (package or "mnist_sgd").split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(filter(None, [*base, node.module]))
            names.append(module)
            if module.partition(".")[0] == "mnist_sgd":  # `from mnist_sgd import plots`: names that are modules
                names += [f"{module}.{alias.name}" for alias in node.names]
    return tuple(names)


def code_digest(script):
    """Digest of a rule's script (a path) and of the package modules it imports, directly or through one
    another, but EXECUTION's. As a rule parameter it makes an edit of one of them rerun exactly the rules
    that use it, and nothing else: Snakemake's own code trigger, which the profiles leave out, would
    compare the script's modification time instead of its content."""
    modules, _ = imports(script)
    digest = hashlib.sha256(Path(script).read_bytes())
    for key in sorted(k for k in modules if not k.startswith(EXECUTION)):  # how a job runs changes no number
        digest.update((PACKAGE / f"{key}.py").read_bytes())
    return digest.hexdigest()[:16]
