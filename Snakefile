# The MNIST minibatch-SGD study as a DAG: cached MNIST -> one training job per run -> metrics -> figures.
# `snakemake --cores 4 all`; see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/plots.smk"


# Jobs that run on the submit host, never on a cluster: downloads need the internet, the rest are short
# (the optimum of a training set takes seconds).
localrules:
    download_mnist,
    format_mnist,
    summarize,
    optimum,
    plot_run,
    plot_group,
    plot_learning_rate,
    plot_wall_time,
    plot_steps_to_target,
    plot_noise_scale,
    plot_train_size,


rule all:
    default_target: True
    input:
        rules.summarize.output,
        all_figures(),
        run_records(RUNS),


include: "workflow/rules/targets.smk"


onerror:
    write_partial_summary()
