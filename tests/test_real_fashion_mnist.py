"""Fashion-MNIST, the second built-in data set, on its real files: Debian's dataset-fashion-mnist package
(the original files), fetched with apt-get; skipped where the package cannot be had. Never committed."""

import json
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, snakemake, sweep

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="needs apt-get and dpkg-deb"),
]


@pytest.fixture(scope="module")
def debian_datasets(tmp_path_factory):
    """Debian's /usr/share/datasets from the package, unpacked into a temporary folder: it holds
    fashion-mnist/ with the four .gz files, the layout data_mirror takes."""
    folder = tmp_path_factory.mktemp("deb")
    download = subprocess.run(
        ["apt-get", "download", "dataset-fashion-mnist"], cwd=folder, capture_output=True, text=True, timeout=300
    )
    packages = list(folder.glob("dataset-fashion-mnist_*.deb"))
    if download.returncode != 0 or not packages:
        pytest.skip(f"apt-get download dataset-fashion-mnist failed: {download.stderr.strip()[-300:]}")
    subprocess.run(["dpkg-deb", "-x", str(packages[0]), str(folder / "root")], check=True, timeout=300)
    return folder / "root" / "usr" / "share" / "datasets"


@pytest.fixture(scope="module")
def study(debian_datasets, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fashion")
    copy_workflow(workdir)
    own = {"sweeps": {"fashion": sweep(datasets=["fashion-mnist"], batch_sizes=[100], iterations=6000, lr=0.001)}}
    (workdir / "fashion.yaml").write_text(yaml.safe_dump(own))
    result = snakemake(
        workdir,
        "--cores",
        "2",
        "--configfile",
        "fashion.yaml",
        "--replace-workflow-config",
        "--config",
        f"data_mirror={debian_datasets}",
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout
    return workdir


def test_the_pinned_checksums_hold_for_the_original_files_which_torchvisions_md5_would_refuse(study):
    log = (study / "results" / "logs" / "download_mnist" / "fashion-mnist" / "idx_files.log").read_text()
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert f"verified copy of fashion-mnist's {name} from " in log and "/fashion-mnist/" in log
        assert "not torchvision's" in log  # Debian recompressed them: same content, other .gz bytes


def test_fashion_mnist_trains_to_a_plausible_accuracy_below_its_least_squares_optimum(study):
    summary = pd.read_csv(study / "results" / "summary.csv")
    (row,) = summary.itertuples()
    assert row.run == "fashion-mnist/scratch/trainall_batch100_lr0.001_it6000_seed0" and row.dataset == "fashion-mnist"
    optimum = json.loads((study / "results" / "optimum" / "fashion-mnist" / "trainall.json").read_text())
    assert optimum["rank"] == 784 and 0.80 < optimum["test_accuracy"] < 0.82
    assert 0.75 < row.final_test_accuracy < optimum["test_accuracy"]
    figures = study / "results" / "figures" / "runs" / "fashion-mnist" / "scratch"
    assert (figures / "trainall_batch100_lr0.001_it6000_seed0" / "weights.png").exists()
