"""Rule download_mnist: fetch the four verified IDX files of a data set (mnist_sgd.data.sources says from where)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # its log; the warm worker runs the rest where it can

from mnist_sgd.data.fetch import fetch_idx  # noqa: E402
from mnist_sgd.data.sources import md5_note, sources  # noqa: E402
from mnist_sgd.study.datasets import IDX_FILES, dataset_of  # noqa: E402

# Mirrors and timeouts are read here, not passed as params: where a verified file came from does not
# change it, so pointing the workflow at another mirror must not trigger a download.
config = snakemake.config
dataset = dataset_of(snakemake.wildcards.dataset_dir)
custom = (config.get("custom_datasets") or {}).get(dataset)
mirrors = sources(dataset, config["data_mirror"], config["mirrors"], custom)
unreachable = set()  # a mirror that stalls on one file is skipped for the others
for name, sha256, destination in zip(IDX_FILES, snakemake.params.sha256, snakemake.output):
    source, gz_md5 = fetch_idx(
        name,
        mirrors,
        sha256,
        destination,
        dataset=dataset,
        stall=config["download_stall_seconds"],
        deadline=config["download_deadline_seconds"],
        hint=custom and f"Put the four IDX files (gzip or plain) in custom_datasets.{dataset}.path ({custom['path']}).",
        log=lambda message: print(message, file=sys.stderr),
        unreachable=unreachable,
    )
    print(f"{destination}: verified copy of {dataset}'s {name} from {source}", file=sys.stderr)
    note = md5_note(dataset, name, gz_md5)
    if note:
        print(note, file=sys.stderr)
