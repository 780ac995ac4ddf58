# The training jobs: one per pack of runs (mnist_sgd.study.packs), every run through the same program
# (mnist_sgd.training.train), and each run's records its own outputs, with the bytes it has trained alone.
# Only the runs whose records are missing, damaged or outdated are packed (inputs.smk): a finished run
# is a file no rule makes, so an edit elsewhere, a new cache or a new optimum never retrains it.
for pack in PACKS:
    as_train_rule(pack)

    rule:
        name:
            pack.name
        input:
            # The cache, and the curvature of each training set whose runs measure their noise scales
            # (rule optimum saves it): a pack trains only runs that must train, so they cost no rerun.
            data=cache_file(pack.dataset),
            curvature=pack_curvature(pack),
            # The data set's kernel table, for packs of small batches on the CPU (rule test_kernel).
            kernel=pack_kernel(pack),
        output:
            metrics=run_files(pack.runs, "metrics.csv"),
            info=run_files(pack.runs, "run.json"),
            weights=run_files(pack.runs, "weights.npy"),
        # The pack's own log; each run logs to results/logs/train/<run>.log (train_logs) besides.
        log:
            f"results/logs/train/packs/{pack.name}.log",
        benchmark:
            f"results/benchmarks/train/packs/{pack.name}.tsv"
        # The most expensive packs start first, so that the longest is not left for the end.
        priority: round(pack_seconds(pack.runs, NUM_TRAIN, pack.kernel))
        conda:
            "../../envs/train.yaml"
        # Training always runs on one thread (scripts/train.py): with two, BLAS sums in another order and a
        # run's losses would depend on --cores. `threads` is the share of --cores a job holds: one, or more
        # where --cores exceeds this machine's CPUs, so that no more jobs train at once than it has CPUs.
        threads: train_slots()
        resources:
            gpu=1 if HAS_GPU and config["device"] != "cpu" else 0,
        params:
            runs=list(pack.runs),
            # Why each run trains: records missing, damaged or outdated (a dry run shows the pack of a
            # record found untrusted, still in place, as one to run).
            reasons=list(pack.reasons),
            # What its runs compute besides their names: the training code's and the data's digests, and
            # where they measure their gradient noise scales. Each run records them, and planning retrains
            # a record made from others (training_inputs).
            inputs=training_inputs(pack.runs[0]).as_record(),
            idx_files=raw_files(pack.dataset),
            curvature=[curvature_file(run) for run in pack.runs],
        script:
            "../scripts/train.py"


# A finished run's records named as targets on the command line: no job makes them, and this rule has
# nothing to do (Snakemake refuses a target that no rule makes, even one that is there).
if FINISHED_TARGETS:

    rule finished_run:
        output:
            FINISHED_TARGETS,

    localrules:
        finished_run,


# The exact least-squares optimum of each training set the runs use: the yardstick in the summary and the
# figures; and the training set's example curvature, which its runs' noise scales need (mnist_sgd.training.noise).
# The packs take the curvature as an input; the optimum's own input is only the wait for the cache.
rule optimum:
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
