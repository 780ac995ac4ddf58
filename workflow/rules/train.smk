# One training job per run; every run goes through the same program (mnist_sgd.training.train).
# A run retrains when its parameters (its name), the training code or the data's checksums change.
# The cache is a function of those checksums and of its version (mnist_sgd.data, in the training code's
# digest), and every load checks its content against the digest stored with it: so re-creating the cache
# does not retrain (ancient, and no input at all of a finished run: see data_input), and a damaged,
# outdated or missing cache is never trained on (the first job to find it rebuilds it).


rule train:
    input:
        data=lambda wildcards: data_input(
            run_dataset(wildcards),
            run_records([RUN.format(**wildcards)], optima=False),
        ),
        curvature=lambda wildcards: curvature_input(RUN.format(**wildcards)),
    output:
        metrics=f"results/runs/{RUN}/metrics.csv",
        info=f"results/runs/{RUN}/run.json",
        weights=f"results/runs/{RUN}/weights.npy",
    log:
        f"results/logs/train/{RUN}.log",
    benchmark:
        f"results/benchmarks/train/{RUN}.tsv"
    # The most expensive runs start first, so that the longest is not left for the end.
    priority: run_priority
    conda:
        "../../envs/train.yaml"
    # Training always runs on one thread (scripts/train.py): with two, BLAS sums in another order and a
    # run's losses would depend on --cores. `threads` is the share of --cores a job holds: one, or more
    # where --cores exceeds this machine's CPUs, so that no more jobs train at once than it has CPUs.
    threads: train_slots()
    resources:
        gpu=1 if HAS_GPU and config["device"] != "cpu" else 0,
    params:
        # What the run computes besides its name: the training code's and the data's digests, and where
        # it measures its gradient noise scales (a new value retrains, to measure there). The run records
        # them, and planning retrains a record made from others (training_inputs).
        inputs=lambda wildcards: training_inputs(RUN.format(**wildcards)).as_record(),
        cache=lambda wildcards: cache_file(run_dataset(wildcards)),
        idx_files=lambda wildcards: raw_files(run_dataset(wildcards)),
        curvature=lambda wildcards: curvature_file(RUN.format(**wildcards)),
    script:
        "../scripts/train.py"


# The exact least-squares optimum of each training set the runs use: the yardstick in the summary and the
# figures; and the training set's example curvature, which its runs' noise scales need (mnist_sgd.training.noise).
# A checkpoint: training jobs wait for it without taking the curvature as an input (see curvature_input).
checkpoint optimum:
    input:
        data=lambda wildcards: data_input(
            training_set_dataset(wildcards),
            [
                f"results/optimum/{wildcards.training_set}.json",
                f"results/optimum/{wildcards.training_set}.curvature.npz",
            ],
        ),
    output:
        json="results/optimum/{training_set}.json",
        curvature="results/optimum/{training_set}.curvature.npz",
    log:
        "results/logs/optimum/{training_set}.log",
    # Seconds each, and every figure of its runs waits for it: before the training jobs, whose priority is
    # their estimated seconds (the longest run is a minute).
    priority: 1000
    conda:
        "../../envs/train.yaml"
    threads: 1
    params:
        data=lambda wildcards: data_digest(training_set_dataset(wildcards)),
        code=code_digest("optimum"),
        cache=lambda wildcards: cache_file(training_set_dataset(wildcards)),
        idx_files=lambda wildcards: raw_files(training_set_dataset(wildcards)),
    script:
        "../scripts/optimum.py"


# On the submit host: the optimum of a training set takes seconds.
localrules:
    optimum,
