# MNIST: fetch and verify the four IDX files, then cache the formatted tensors once.


rule download_mnist:
    output:
        "results/data/raw/{idx_file}",
    log:
        "results/logs/download_mnist/{idx_file}.log",
    conda:
        "../../envs/train.yaml"
    params:
        sha256=lambda wildcards: config["data_sha256"][wildcards.idx_file],
        code=code_digest("download_mnist"),
    script:
        "../scripts/download_mnist.py"


rule format_mnist:
    input:
        train_images=idx_file("train-images-idx3-ubyte"),
        train_labels=idx_file("train-labels-idx1-ubyte"),
        test_images=idx_file("t10k-images-idx3-ubyte"),
        test_labels=idx_file("t10k-labels-idx1-ubyte"),
    output:
        cache="results/data/mnist.pt",
    log:
        "results/logs/format_mnist.log",
    conda:
        "../../envs/train.yaml"
    params:
        code=code_digest("format_mnist"),
    script:
        "../scripts/format_mnist.py"
