# What rule all (Snakefile) asks for.
def all_targets():
    """What `snakemake all` (the default target) makes: the summary, every figure, and every run's
    records (see run_records)."""
    return [*rules.summarize.output, *all_figures(), *run_records(RUNS)]


# One target per sweep and per comparison, named after it: `snakemake --cores 4 batch_size` trains
# that sweep's runs and draws its figures, nothing else. `train` is the training jobs' name in the
# profiles' set-resources (as_train_rule).
for group in FIGURE_GROUPS:
    if group in {other.name for other in workflow.rules} | {"all", "train"}:
        raise WorkflowError(
            f"config error: {group!r} names a sweep or comparison and a rule of the workflow; "
            "rename the sweep or comparison"
        )

    rule:
        name:
            group
        input:
            group_figures(group),
            run_records(FIGURE_GROUPS[group][1]),
