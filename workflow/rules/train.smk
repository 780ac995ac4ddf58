# One training job per run; every run goes through the same program (mnist_sgd.train).


rule train:
    input:
        data=rules.format_mnist.output.cache,
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
        eval_every=config["eval_every"],
        device=config["device"],
    script:
        "../scripts/train.py"


rule summarize:
    input:
        infos=run_files(RUNS, "run.json"),
    output:
        "results/summary.csv",
    log:
        "results/logs/summarize.log",
    conda:
        "../../envs/plot.yaml"
    params:
        sweeps={run: [s for s, runs in SWEEPS.items() if run in runs] for run in RUNS},
    script:
        "../scripts/summarize.py"
