# Figures, each in every configured format; they read metrics and summaries, never the data.
# Their params hold figure options and the plotting code's digest: changing either redraws only figures.


# How the report's table of a run's figures names them.
RUN_LABELS = {
    "training images": "{train_size}",
    "batch size": "{batch_size}",
    "learning rate": "{lr}",
    "iterations": "{iterations}",
    "seed": "{seed}",
}


# A run's own figures: its curves, and what its model learned (weights and confusion matrix). One job
# draws the three (a Python start-up each would cost more than the drawing).
rule plot_run:
    input:
        metrics=f"results/runs/{RUN}/metrics.csv",
        info=f"results/runs/{RUN}/run.json",
        weights=f"results/runs/{RUN}/weights.npy",
        optimum=lambda wildcards: optimum_file(RUN.format(**wildcards)),
    output:
        curves=figure(
            f"results/figures/runs/{RUN}.{{ext}}",
            caption="run",
            category="2. Runs",
            subcategory="{dataset_dir}{impl}",  # MNIST runs: impl; others: data set/impl
            labels={**RUN_LABELS, "figure": "loss and accuracy"},
        ),
        weights=figure(
            f"results/figures/runs/{RUN}/weights.{{ext}}",
            caption="weights",
            category="2. Runs",
            subcategory="{dataset_dir}{impl}",
            labels={**RUN_LABELS, "figure": "final weights"},
        ),
        confusion=figure(
            f"results/figures/runs/{RUN}/confusion.{{ext}}",
            caption="confusion",
            category="2. Runs",
            subcategory="{dataset_dir}{impl}",
            labels={**RUN_LABELS, "figure": "confusion matrix"},
        ),
    log:
        f"results/logs/plot_run/{RUN}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_run"),
    script:
        "../scripts/plot_run.py"


rule plot_group:
    input:
        metrics=lambda wildcards: run_files(
            FIGURE_GROUPS[wildcards.group][1], "metrics.csv"
        ),
        infos=lambda wildcards: run_files(FIGURE_GROUPS[wildcards.group][1], "run.json"),
        optima=lambda wildcards: [
            optimum_file(run) for run in FIGURE_GROUPS[wildcards.group][1]
        ],
    output:
        curves=figure(
            "results/figures/{group}/curves.{ext}",
            caption="curves",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "loss and accuracy curves"},
        ),
        final_accuracy=figure(
            "results/figures/{group}/final_accuracy.{ext}",
            caption="final_accuracy",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "final test accuracy"},
        ),
    log:
        "results/logs/plot_group/{group}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        # The title as reStructuredText for the captions: the report also lists params as they are,
        # so no raw text from the config goes there. The script reads the title from the config.
        title=lambda wildcards: rst_text(FIGURE_GROUPS[wildcards.group][0]),
        labels=lambda wildcards: run_labels(
            list(configurations(FIGURE_GROUPS[wildcards.group][1]))
        ),
        smoothing=config["figures"]["smoothing"],
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_group"),
    script:
        "../scripts/plot_group.py"


# For a sweep or comparison with several learning rates.
rule plot_learning_rate:
    input:
        infos=lambda wildcards: run_files(FIGURE_GROUPS[wildcards.group][1], "run.json"),
    output:
        figure(
            "results/figures/{group}/learning_rate.{ext}",
            caption="learning_rate",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "accuracy vs. learning rate"},
        ),
    log:
        "results/logs/plot_learning_rate/{group}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        title=lambda wildcards: rst_text(FIGURE_GROUPS[wildcards.group][0]),
        labels=lambda wildcards: learning_rate_labels(FIGURE_GROUPS[wildcards.group][1]),
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_learning_rate"),
    script:
        "../scripts/plot_learning_rate.py"


rule plot_wall_time:
    input:
        summary=rules.summarize.output.csv,
    output:
        figure(
            "results/figures/wall_time.{ext}",
            caption="wall_time",
            category="3. Cost",
            labels={"figure": "training wall time"},
        ),
    log:
        "results/logs/plot_wall_time.log",
    conda:
        "../../envs/plot.yaml"
    params:
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_wall_time"),
    script:
        "../scripts/plot_wall_time.py"


# The batch-size and training-set-size analysis (docs/scaling.md), for the groups whose runs support it
# (group_figures): steps to each target against batch size, the noise scales along training, and test
# accuracy against training-set size. One script draws each from a summary of the group's runs.
rule plot_steps_to_target:
    input:
        infos=lambda wildcards: run_files(FIGURE_GROUPS[wildcards.group][1], "run.json"),
        metrics=lambda wildcards: run_files(
            FIGURE_GROUPS[wildcards.group][1], "metrics.csv"
        ),
    output:
        figure(
            "results/figures/{group}/steps_to_target.{ext}",
            caption="steps_to_target",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "steps to target vs. batch size"},
        ),
    log:
        "results/logs/plot_steps_to_target/{group}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        title=lambda wildcards: rst_text(FIGURE_GROUPS[wildcards.group][0]),
        targets=TARGETS,
        window=config["target_window"],
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_steps_to_target"),
    script:
        "../scripts/plot_steps_to_target.py"


rule plot_noise_scale:
    input:
        infos=lambda wildcards: run_files(FIGURE_GROUPS[wildcards.group][1], "run.json"),
    output:
        figure(
            "results/figures/{group}/noise_scale.{ext}",
            caption="noise_scale",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "gradient noise scales"},
        ),
    log:
        "results/logs/plot_noise_scale/{group}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        title=lambda wildcards: rst_text(FIGURE_GROUPS[wildcards.group][0]),
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_noise_scale"),
    script:
        "../scripts/plot_noise_scale.py"


rule plot_train_size:
    input:
        infos=lambda wildcards: run_files(FIGURE_GROUPS[wildcards.group][1], "run.json"),
        optima=lambda wildcards: [
            optimum_file(run) for run in FIGURE_GROUPS[wildcards.group][1]
        ],
    output:
        figure(
            "results/figures/{group}/train_size.{ext}",
            caption="train_size",
            category="1. Sweeps and comparisons",
            subcategory="{group}",
            labels={"figure": "accuracy vs. training-set size"},
        ),
    log:
        "results/logs/plot_train_size/{group}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        title=lambda wildcards: rst_text(FIGURE_GROUPS[wildcards.group][0]),
        dpi=config["figures"]["dpi"],
        code=code_digest("plot_train_size"),
    script:
        "../scripts/plot_train_size.py"


# Figures are drawn on the submit host: each takes seconds.
localrules:
    plot_run,
    plot_group,
    plot_learning_rate,
    plot_wall_time,
    plot_steps_to_target,
    plot_noise_scale,
    plot_train_size,
