# One training job per run; every run goes through the same program (mnist_sgd.train).
# A run retrains when its parameters, the training code or the data's checksums change; re-creating
# the cache with the same content does not retrain (ancient), its content is pinned by params.data.


rule train:
    input:
        data=ancient(rules.format_mnist.output.cache),
    output:
        metrics=f"results/runs/{RUN}/metrics.csv",
        info=f"results/runs/{RUN}/run.json",
    log:
        f"results/logs/train/{RUN}.log",
    benchmark:
        f"results/benchmarks/train/{RUN}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=1 if HAS_GPU and config["device"] != "cpu" else 0,
    params:
        data=DATA_DIGEST,
        code=code_digest("train"),
    script:
        "../scripts/train.py"


rule summarize:
    input:
        infos=run_files(RUNS, "run.json"),
    output:
        csv="results/summary.csv",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="4. Summary table",
            labels={"table": "one row per run"},
        ),
    log:
        "results/logs/summarize.log",
    conda:
        "../../envs/plot.yaml"
    params:
        sweeps=SWEEPS_BY_RUN,
        code=code_digest("summarize"),
    script:
        "../scripts/summarize.py"
