"""What the Snakemake workflow catalog and its best-practice template expect of a workflow: a catalog
file, a config reference made from the schema, a license, a citation of the workflow and of its
methods, a GitHub workflow that runs this CI, and a clean `snakemake --lint`."""

import tomllib

import yaml

from conftest import REPO, make_workdir, snakemake, sweep
from mnist_sgd import __version__
from mnist_sgd.study.config import config_reference

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())


def test_config_readme_is_the_schemas_every_key_described():
    written = (REPO / "config" / "README.md").read_text()
    assert written == config_reference(SCHEMA), (
        "config/README.md is out of date: python -m mnist_sgd.study.config config/config.schema.yaml > config/README.md"
    )
    rows = [line.split(" | ") for line in written.splitlines() if line.startswith("| `")]
    assert len(rows) > 30 and all(row[-1].strip(" |") for row in rows)  # each with its description
    for key in ("`sweeps.<name>.batch_sizes`", "`figures.comparisons.<name>.runs`", "`custom_datasets.<name>.path`"):
        assert any(row[0] == f"| {key}" for row in rows), key


def test_the_catalog_file_says_how_to_run_it():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert catalog["mandatory-flags"]["flags"] == "--cores 4" and "data_mirror" in catalog["mandatory-flags"]["desc"]
    assert catalog["software-stack-deployment"]["conda"] is True and catalog["report"] is True


def test_license_and_citation_name_the_project_its_version_and_its_methods():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == __version__ and citation["license"] == "MIT"
    titles = {reference["title"] for reference in citation["references"]}
    assert {
        "Measuring the Effects of Data Parallelism on Neural Network Training",
        "An Empirical Model of Large-Batch Training",
        "More Data Can Hurt for Linear Regression: Sample-wise Double Descent",
    } <= titles


def test_the_github_workflow_runs_this_ci_and_the_linter():
    steps = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]["steps"]
    commands = " ".join(step.get("run", "") for step in steps)
    assert "bash .ci/run" in commands and "snakemake --lint" in commands


def test_the_snakemake_linter_finds_nothing(tmp_path):
    workdir = make_workdir(tmp_path, {"s": sweep()})
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0 and "Congratulations, your workflow is in a good condition!" in result.stdout, (
        result.stdout
    )
