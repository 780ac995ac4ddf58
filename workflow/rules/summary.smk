# The summary tables of every run (and, after a failed run, the partial summary that says what is missing).


rule summarize:
    input:
        infos=run_files(RUNS, "run.json"),
        optima=[optimum_file(run) for run in RUNS],  # one per run, in the same order
        metrics=run_files(RUNS, "metrics.csv"),
    output:
        csv="results/summary.csv",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="4. Summary table",
            labels={"table": "one row per run"},
        ),
        by_config_csv="results/summary_by_config.csv",
        by_config_html=report(
            "results/summary_by_config.html",
            caption="../report/summary_by_config.rst",
            category="4. Summary table",
            labels={"table": "one row per configuration (seeds aggregated)"},
        ),
        batch_scaling="results/batch_scaling.csv",
        critical_batch="results/critical_batch.csv",
    log:
        "results/logs/summarize.log",
    conda:
        "../../envs/plot.yaml"
    params:
        sweeps=SWEEPS_BY_RUN,
        targets=TARGETS,
        window=config["target_window"],
        code=code_digest("summarize"),
    script:
        "../scripts/summarize.py"


# On the submit host: it takes seconds.
localrules:
    summarize,


# pandas is imported only when needed: planning stays without it. The runs a failed pack had finished
# are put back first (Snakemake deleted them with the pack's other outputs).
onerror:
    from mnist_sgd.analysis.summary import write_partial_summary

    restore_finished(log_line)
    write_partial_summary(
        RUNS, SWEEPS_BY_RUN, log=lambda line: print(line, file=sys.stderr)
    )


# The runs for TensorBoard (an optional extra), from their records: `snakemake tensorboard`, then
# `tensorboard --logdir results/tensorboard`. Not part of `all`. Each event file is written only where its
# bytes change (mnist_sgd.analysis.tensorboard), so the manifest is the one declared output.
rule tensorboard:
    input:
        summary=rules.summarize.output.csv,
        metrics=run_files(RUNS, "metrics.csv"),
        infos=run_files(RUNS, "run.json"),
    output:
        manifest="results/tensorboard/manifest.json",
    log:
        "results/logs/tensorboard.log",
    conda:
        "../../envs/tensorboard.yaml"
    params:
        code=code_digest("tensorboard"),
    script:
        "../scripts/tensorboard.py"


localrules:
    tensorboard,
