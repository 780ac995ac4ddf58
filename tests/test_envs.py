"""The conda environments (`envs/*.yaml`, used with `--use-conda`) hold every third-party package the
code of their rules imports, pinned at the versions CI tests (within pyproject.toml's ranges). Conda is not installed where
the tests run, so this reads the files: the rules, their scripts and the package modules those import
(the same import scan that the rules' code digests use).
"""

import re
import tomllib

import pytest
import yaml

from conftest import REPO
from mnist_sgd.execution import digests as imports_module
from mnist_sgd.execution.digests import code_digest, imports
from mnist_sgd.study.packs import PACK_PREFIX

RULES = REPO / "workflow" / "rules"
# Import name -> conda-forge package name, where they differ.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base", "yaml": "pyyaml"}


def rules_with_scripts():
    """(rule name, conda env file or None, script file) for every rule that runs a script."""
    found = []
    for smk in sorted(RULES.glob("*.smk")):
        # A rule defined in a loop (the training packs, the sweep targets) names itself with `name:`.
        for block in re.split(r"(?m)^\s*(?:rule|checkpoint)(?= |:)", smk.read_text())[1:]:
            script = re.search(r'script:\s+"([^"]+)"', block)
            conda = re.search(r'conda:\s+"([^"]+)"', block)
            name = block.split(":")[0].strip() or re.search(r"name:\s+(\S+)", block).group(1)
            if script:
                env = (smk.parent / conda.group(1)).resolve() if conda else None
                found.append(
                    (PACK_RULE if name == "pack.name" else name, env, (smk.parent / script.group(1)).resolve())
                )
    return found


def env_packages(env):
    """{package: (operator, version) or None} of a conda env file: ">=" a range's lower bound, "=" a pin."""
    packages = {}
    for spec in yaml.safe_load(env.read_text())["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?: (>=|=)(\S+))?", spec)
        assert match, f"{env.name}: {spec!r} is neither 'name >=version' nor 'name =version'"
        name, operator, version = match.groups()
        packages[name] = (operator, version) if operator else None
    return packages


PACK_RULE = f"{PACK_PREFIX}<pack>"  # the training rules: one per pack (rules/train.smk)
RULE_SCRIPTS = rules_with_scripts()


def test_every_rule_script_is_found():
    assert {PACK_RULE, "format_mnist", "download_mnist", "summarize", "plot_run", "plot_group", "plot_wall_time"} <= {
        rule for rule, _, _ in RULE_SCRIPTS
    }


@pytest.mark.parametrize("rule, env, script", RULE_SCRIPTS, ids=[rule for rule, _, _ in RULE_SCRIPTS])
def test_each_rule_env_holds_what_its_code_imports(rule, env, script):
    assert env is not None and env.exists(), f"rule {rule} has no conda env file"
    _, third_party = imports(script)
    assert third_party, f"{script.name}: no third-party import found; is the scan broken?"
    missing = {CONDA_NAMES.get(name, name) for name in third_party} - set(env_packages(env))
    assert not missing, f"{env.name} lacks {sorted(missing)}, which rule {rule} imports"


def test_envs_pin_what_ci_tests_within_pyprojects_ranges():
    """Each conda env pins a package at the version requirements/ci.txt installs (requirements/refresh.sh
    writes both), within pyproject.toml's range; python, pytorch and torchvision stay pyproject's ranges."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = {"python": project["requires-python"].removeprefix(">=")}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["tensorboard"]]:
        name, _, bound = spec.partition(">=")
        bounds[CONDA_NAMES.get(name.strip(), name.strip())] = bound.strip()
    pins = dict(
        line.split("==") for line in (REPO / "requirements" / "ci.txt").read_text().splitlines() if "==" in line
    )
    pip_name = {conda: pip for pip, conda in CONDA_NAMES.items()}
    version = lambda text: tuple(int(part) for part in re.findall(r"\d+", text)[:3])  # noqa: E731
    for env in sorted((REPO / "envs").glob("*.yaml")):
        for package, spec in env_packages(env).items():
            operator, found = spec
            if package in ("python", "pytorch", "torchvision"):
                assert spec == (">=", bounds[package]), (
                    f"{env.name}: {package} {spec}, pyproject.toml says >={bounds[package]}"
                )
            else:
                assert operator == "=" and found == pins[pip_name.get(package, package)], (
                    f"{env.name}: {package} {spec}; CI tests {pins[pip_name.get(package, package)]}"
                )
                assert version(found) >= version(bounds[package]), (
                    f"{env.name}: {package} ={found} below >={bounds[package]}"
                )


def test_imports_follow_every_form_of_package_import(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import json\nimport numpy as np\nfrom mnist_sgd import __version__\nfrom mnist_sgd.figures import run\n"
    )
    modules, third_party = imports(script)
    # figures.run imports .common, which imports the study's modules: each with its sub-package's __init__
    study = {"study/__init__", "study/datasets", "study/files", "study/runs"}
    assert modules == {"__init__", "figures/__init__", "figures/run", "figures/common", *study}
    assert third_party == {"numpy", "matplotlib", "pandas"}
    script.write_text("from mnist_sgd.analysis.summary import summarize\n")
    analysis = {"analysis/__init__", "analysis/summary", "analysis/scaling"}
    assert imports(script)[0] == {*analysis, *study, "study/layout", "study/records"}


def test_the_scan_and_the_digest_follow_modules_into_sub_packages(tmp_path, monkeypatch):
    """A module moved into a folder is followed (its folder's __init__ counts, as importing it runs it), and
    a name that is no module, or no longer one, is no file to read: planning never fails on a move."""
    package = tmp_path / "mnist_sgd"
    (package / "figures").mkdir(parents=True)
    (package / "execution").mkdir()
    (package / "execution" / "__init__.py").write_text('"""How jobs run."""\n')
    (package / "__init__.py").write_text('__version__ = "0"\n')
    (package / "study.py").write_text("import math\n")
    (package / "execution" / "worker.py").write_text("import socket\n")
    (package / "figures" / "__init__.py").write_text('"""Figures."""\n')
    (package / "figures" / "common.py").write_text("import matplotlib\n")
    (package / "figures" / "run.py").write_text("from ..study import x\nfrom . import common\nfrom .gone import y\n")
    monkeypatch.setattr(imports_module, "PACKAGE", package)
    script = tmp_path / "plot_run.py"
    script.write_text(
        "from mnist_sgd.figures.run import draw\nfrom mnist_sgd import __version__\nfrom mnist_sgd.execution import worker\n"
    )
    modules, third_party = imports(script)
    assert modules == {
        "figures/__init__",
        "figures/run",
        "figures/common",
        "study",
        "execution/__init__",
        "execution/worker",
        "__init__",
    }
    assert third_party == {"matplotlib"}
    digest = code_digest(script)
    (package / "execution" / "worker.py").write_text("import socket  # an edit of where jobs run\n")
    assert code_digest(script) == digest  # EXECUTION's modules are left out
    (package / "figures" / "common.py").write_text("import matplotlib  # an edit of a figure\n")
    assert code_digest(script) != digest


def test_ci_installs_every_test_and_tooling_dependency_at_an_exact_version():
    """requirements/ci.txt (requirements/refresh.sh) pins each package pyproject.toml's extras name, the
    holds of requirements/holds.txt at their held versions, and .ci/run installs from it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    named = [
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for extra in project["optional-dependencies"].values() for r in extra
    ]
    pins = dict(
        line.split("==")
        for line in (REPO / "requirements" / "ci.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    normal = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    assert {normal(n) for n in named} - set(pins) == set()
    for line in (REPO / "requirements" / "holds.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert pins[normal(name)] == version, line
    assert "-c requirements/ci.txt" in (REPO / ".ci" / "run").read_text()
