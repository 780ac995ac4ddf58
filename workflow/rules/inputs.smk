# What the rules read and write: paths (mnist_sgd.study.layout), code and data digests as parameters, and the
# checkpoint waits that stand in for the data cache and the curvature as inputs.
import functools

from mnist_sgd.execution.digests import code_digest as script_digest
from mnist_sgd.study.layout import (
    cache_file,
    curvature_file,
    kernel_file,
    data_digest as dataset_digest,
    optimum_file,
    raw_files,
    run_files,
    run_records,
)
from mnist_sgd.study.datasets import dataset_of, dataset_sha256
from mnist_sgd.study.packs import (
    DONE_DIR,
    pack_seconds,
    pending_runs,
    plan_packs,
    read_plan,
    restore_finished,
    write_plan,
)
from mnist_sgd.study.records import TrainingInputs, set_aside_untrusted
from mnist_sgd.study.runs import parse_training_set, training_set_name
from mnist_sgd.study.targets import FigureTargets, rst_text

SCRIPTS = os.path.join(workflow.basedir, "workflow", "scripts")
FIGURES = FigureTargets(config, FIGURE_GROUPS, TARGETS)
group_figures, all_figures = FIGURES.group_figures, FIGURES.all_figures


def code_digest(script):
    """The code digest (mnist_sgd.execution.digests.code_digest) of `workflow/scripts/<script>.py`."""
    return script_digest(os.path.join(SCRIPTS, f"{script}.py"))


data_digest = functools.partial(dataset_digest, config)


def data_input(dataset, outputs):
    """An optimum job's input: none, ever; where some of the job's `outputs` are missing and the cache
    of `dataset` is too, it first waits for the cache (checkpoint format_mnist). (A training job, a pack,
    only ever trains runs that must train, so it takes the cache as a plain input.)

    Snakemake reruns every job downstream of one that runs, ancient input or not (snakemake#946), and a
    job whose set of inputs changed. With the cache as an input, deleting the cache or the raw files,
    which are rebuilt bit-identical from checksum-pinned files, would recompute every optimum. So the
    cache is never its input: a job that must run waits for it through the checkpoint, and one that runs
    because its code or parameters changed loads it itself, rebuilding it from the IDX files if it is
    missing (mnist_sgd.data.cache.load_cache). The cache is a function of the data's checksums, in the job's
    parameters, and of its version, in the code digest.
    """
    # The cache first: it is there for almost every job, and then its outputs need no look.
    if not os.path.exists(cache_file(dataset)) and not all(
        map(os.path.exists, outputs)
    ):
        # Only then: a checkpoint asked for by every job costs planning seconds.
        checkpoints.format_mnist.get(dataset=dataset)
    return []


def pack_curvature(pack):
    """The curvature files the runs of `pack` read for their noise scales (none without noise points)."""
    if not config["noise_points"]:
        return []
    return list(dict.fromkeys(curvature_file(run) for run in pack.runs))


def pack_kernel(pack):
    """The kernel table the runs of `pack` read for their test accuracy (mnist_sgd.data.kernel), where
    planning found it pays (mnist_sgd.study.packs.plan_packs)."""
    return [kernel_file(pack.dataset)] if pack.kernel else []


def as_train_rule(pack):
    """Give the rule of `pack` what a profile's set-resources and set-threads say for `train`, the name
    the profiles (profiles/slurm) give the training jobs: Snakemake applies them by rule name, when the
    rule is defined."""
    settings = workflow.resource_settings
    for overwrites in (
        settings._parsed_overwrite_resources,
        settings._parsed_overwrite_threads,
    ):
        if "train" in overwrites:
            overwrites[pack.name] = overwrites["train"]


def run_dataset(wildcards):
    """The data set of the run (or IDX file) a job's wildcards name."""
    return dataset_of(wildcards.dataset_dir)


def training_set_dataset(wildcards):
    """The data set of the training set a job's wildcards name."""
    return parse_training_set(wildcards.training_set)[0]


def figure(path, caption, category, subcategory=None, labels=None):
    """`path` (with {ext}) in every configured format; the report shows REPORT_FORMAT's file."""
    files = [path.replace("{ext}", ext) for ext in FORMATS]
    shown = FORMATS.index(REPORT_FORMAT)
    files[shown] = report(
        files[shown],
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels=labels,
    )
    return files


TRAINING_CODE = code_digest("train")


def training_inputs(run):
    """What the records of run `run` must have been made from (mnist_sgd.study.records.TrainingInputs):
    each training rule's `inputs` parameter."""
    return TrainingInputs(
        TRAINING_CODE, data_digest(parse_run(run)["dataset"]), config["noise_points"]
    )


@functools.cache
def command_line():
    """Snakemake's command line, parsed as Snakemake parses it; None where Snakemake was not started
    from one (its API, called from Python). While the Snakefile is read, `workflow.dryrun` and the forced
    targets are not known yet (Snakemake 9 makes its executor and DAG afterwards)."""
    from snakemake.cli import get_argument_parser

    try:
        known, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except SystemExit:
        return None
    return known


def flags(long, short):
    """Whether the command line holds an option that starts with one of `long`, or a cluster of short
    options holding one of the letters `short` (only then is it parsed: command_line).
    """
    options = [arg for arg in sys.argv[1:] if arg.startswith("-")]
    return any(
        o.startswith(long) or (not o.startswith("--") and set(o[1:]) & set(short))
        for o in options
    )


def dry_run():
    """Whether this invocation is a dry run."""
    if workflow.dryrun:
        return True
    return flags(("--dry",), "n") and bool(command_line() and command_line().dryrun)


def forced_runs():
    """The runs the command line forces to train again: every run with --forceall, and those whose
    records --forcerun or --force (with the records as targets) names. A finished run is a file no rule
    makes (mnist_sgd.study.packs), so Snakemake cannot force it itself. The command line is parsed (about a
    second) only where it holds such a flag."""
    if not flags(("--force",), "FRf"):
        return []
    known = command_line()
    if known is None:
        return []
    if known.forceall:
        return RUNS
    named = set(known.forcerun or []) | set(known.targets if known.force else [])
    return [run for run in RUNS if named & set(run_records([run], optima=False))]


def finished_targets(pending):
    """The records of finished runs (not in `pending`) that the command line names as targets: files no
    rule makes, which Snakemake would refuse as targets ("No rule to produce"). The command line is parsed
    only where it names a file under results/runs/."""
    if not any(arg.lstrip("./").startswith("results/runs/") for arg in sys.argv[1:]):
        return []
    known = command_line()
    targets = {os.path.normpath(t) for t in (known.targets or [])} if known else set()
    return [
        f
        for run in RUNS
        if run not in pending
        for f in run_records([run], optima=False)
        if f in targets
    ]


def log_line(line):
    print(line, file=sys.stderr)


# The training jobs: packs of the runs whose records are missing (mnist_sgd.study.packs). Finished runs
# are files no rule makes. A run whose records are torn or edited, or made from other code or data (a
# results folder copied from another version: mnist_sgd.study.records.untrusted_run), is retrained: its
# run.json is set aside as run.json.damaged or run.json.outdated. Not in a dry run (it says what a real
# run would do), nor in a cluster job's own Snakemake, which trains the packs the main one planned.
if workflow.remote_exec:
    PACKS, FINISHED_TARGETS = read_plan(), []
else:
    if os.path.isdir(DONE_DIR) and not dry_run():
        restore_finished(log_line)  # the runs a failed or killed pack had finished
    folders = [f"results/runs/{run}" for run in RUNS]
    untrusted = set_aside_untrusted(
        folders, [training_inputs(run) for run in RUNS], dry_run, log=log_line
    )
    pending = dict.fromkeys(pending_runs(RUNS), "missing records")
    pending.update(dict.fromkeys(forced_runs(), "forced"))
    pending.update(
        {run: untrusted[f] for run, f in zip(RUNS, folders) if f in untrusted}
    )
    PACKS = plan_packs(
        {run: pending[run] for run in RUNS if run in pending},
        NUM_TRAIN,
        config["pack_seconds"],
        cpu=config["device"] != "cuda",
        table=config["kernel_table"],
    )
    if PACKS and not dry_run():
        write_plan(PACKS)
    FINISHED_TARGETS = finished_targets(pending)
