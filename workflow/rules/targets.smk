# One target per sweep and per comparison, named after it: `snakemake --cores 4 batch_size` trains
# that sweep's runs and draws its figures, nothing else.
for group in FIGURE_GROUPS:
    if group in {other.name for other in workflow.rules}:
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
