# The data sets: fetch and verify each one's four IDX files, then cache its formatted tensors once.
# MNIST's files stay where they were before there were other data sets (results/data/raw/, mnist.pt);
# another data set's go in a folder of its own (results/data/raw/<data set>/, <data set>.pt).
# Neither rule carries a code digest: a raw file is pinned by its SHA-256, whatever code fetched it, and
# the cache by its version and its sources' SHA-256, checked on every load (mnist_sgd.data.cache.load_cache).
# So an edit of the data code retrains (the training jobs' digests cover it) without first rebuilding
# the data, which would make Snakemake 9.27 stop before the training jobs (see docs/reruns.md).


# One job fetches a data set's four files (one job's start instead of four; locally, in the warm worker).
rule download_mnist:
    output:
        [f"results/data/raw/{{dataset_dir}}{name}" for name in IDX_FILES],
    log:
        "results/logs/download_mnist/{dataset_dir}idx_files.log",
    conda:
        "../../envs/train.yaml"
    params:
        # In IDX_FILES' order: a mapping's order would depend on how the config lists them.
        sha256=lambda wildcards: [
            dataset_sha256(config, run_dataset(wildcards))[name] for name in IDX_FILES
        ],
    script:
        "../scripts/download_mnist.py"


# A checkpoint: optimum jobs wait for it without taking the cache as an input (see inputs.smk,
# data_input); the packs take the cache as an input.
checkpoint format_mnist:
    input:
        unpack(
            lambda wildcards: dict(
                zip(
                    ("train_images", "train_labels", "test_images", "test_labels"),
                    raw_files(wildcards.dataset),
                )
            )
        ),
    output:
        cache="results/data/{dataset}.pt",
    log:
        "results/logs/format_mnist/{dataset}.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/format_mnist.py"


# The kernel table of a data set (mnist_sgd.data.kernel): every training image's pixel products with every
# test image, which the packs of small-batch runs read for their test accuracy. 2.4 GB for MNIST, a
# temporary file: Snakemake deletes it once the packs that read it are done, and a later workflow run
# that trains such runs computes it again (seconds).
rule test_kernel:
    input:
        data="results/data/{dataset}.pt",
    output:
        table=temp("results/data/{dataset}.kernel.bin"),
    log:
        "results/logs/test_kernel/{dataset}.log",
    priority: 1000
    conda:
        "../../envs/train.yaml"
    # One GEMM of 0.9 TFLOP for MNIST, as fast as the cores it is given: all but one (kernel_slots), so
    # that the optimum, and the packs that need no table, run beside it; the packs of small batches
    # wait for it. Its numbers do not depend on the threads (see mnist_sgd.data.kernel).
    threads: kernel_slots()
    params:
        idx_files=lambda wildcards: raw_files(wildcards.dataset),
    script:
        "../scripts/test_kernel.py"


# These run on the submit host, never on a cluster: downloads need the internet, and the cache and the
# kernel table are needed by the training jobs (the table by every pack of small batches: as a cluster
# job of its own it would add a queue wait before all of them; seconds of two threads here).
localrules:
    download_mnist,
    format_mnist,
    test_kernel,
