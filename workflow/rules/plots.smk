# Figures, each in every configured format; they read metrics and summaries, never the data.


rule plot_run:
    input:
        metrics=f"results/runs/{RUN}/metrics.csv",
        info=f"results/runs/{RUN}/run.json",
    output:
        expand(f"results/figures/runs/{RUN}.{{ext}}", ext=FORMATS, allow_missing=True),
    log:
        f"results/logs/plot_run/{RUN}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_run.py"


rule plot_sweep:
    input:
        metrics=lambda wildcards: run_files(SWEEPS[wildcards.sweep], "metrics.csv"),
        infos=lambda wildcards: run_files(SWEEPS[wildcards.sweep], "run.json"),
    output:
        curves=expand("results/figures/{{sweep}}/curves.{ext}", ext=FORMATS),
        final_accuracy=expand(
            "results/figures/{{sweep}}/final_accuracy.{ext}", ext=FORMATS
        ),
    log:
        "results/logs/plot_sweep/{sweep}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        title=lambda wildcards: config["sweeps"][wildcards.sweep].get(
            "title", wildcards.sweep
        ),
        labels=lambda wildcards: run_labels(SWEEPS[wildcards.sweep]),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_sweep.py"


rule plot_wall_time:
    input:
        summary=rules.summarize.output[0],
    output:
        expand("results/figures/wall_time.{ext}", ext=FORMATS),
    log:
        "results/logs/plot_wall_time.log",
    conda:
        "../../envs/plot.yaml"
    params:
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_wall_time.py"
