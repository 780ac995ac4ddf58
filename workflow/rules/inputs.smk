# What the rules read and write: paths (mnist_sgd.study.layout), code and data digests as parameters, and the
# checkpoint waits that stand in for the data cache and the curvature as inputs.
import functools

from mnist_sgd.execution.digests import code_digest as script_digest
from mnist_sgd.study.layout import (
    cache_file,
    curvature_file,
    data_digest as dataset_digest,
    optimum_file,
    raw_files,
    run_files,
    run_records,
)
from mnist_sgd.study.cost import estimated_seconds
from mnist_sgd.study.datasets import dataset_of, dataset_sha256
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
    """A training or optimum job's input: none, ever; where some of the job's `outputs` are missing and
    the cache of `dataset` is too, it first waits for the cache (checkpoint format_mnist).

    Snakemake reruns every job downstream of one that runs, ancient input or not (snakemake#946), and a
    job whose set of inputs changed. With the cache as an input, deleting the cache or the raw files,
    which are rebuilt bit-identical from checksum-pinned files, would retrain every finished run. So the
    cache is never an input: a job that must run waits for it through the checkpoint, and one that runs
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


def curvature_input(run):
    """A training job's input for its noise scales: none, ever (as data_input, and for the same reason:
    a new optimum, after a code edit, must not retrain every run). A run that must train and measures
    its noise scales waits for its training set's curvature (checkpoint optimum) when it is missing; a
    run that retrains because its code changed computes it itself if it is gone (mnist_sgd.training.train.run).
    """
    if (
        config["noise_points"]
        and not os.path.exists(curvature_file(run))
        and not all(map(os.path.exists, run_records([run], optima=False)))
    ):
        checkpoints.optimum.get(training_set=training_set_name(run))
    return []


def run_dataset(wildcards):
    """The data set of the run (or IDX file) a job's wildcards name."""
    return dataset_of(wildcards.dataset_dir)


def run_priority(wildcards):
    """A training job's priority: its estimated seconds (a custom data set's size is known once fetched)."""
    run = RUN.format(**wildcards)
    return round(estimated_seconds(run, NUM_TRAIN[run_dataset(wildcards)] or 60000))


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
    rule train's `inputs` parameter."""
    return TrainingInputs(
        TRAINING_CODE, data_digest(parse_run(run)["dataset"]), config["noise_points"]
    )


def dry_run():
    """Whether this invocation is a dry run. While the Snakefile is read, `workflow.dryrun` is always
    False (Snakemake 9 makes its executor afterwards), so the command line is read as Snakemake reads it.
    """
    if workflow.dryrun:
        return True
    from snakemake.cli import get_argument_parser

    # Not Snakemake's command line (its API, called from Python): not a dry run.
    try:
        known, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except SystemExit:
        return False
    return bool(known.dryrun)


# A run whose records are torn or edited, or made from other code or data (a results folder copied
# from another version: mnist_sgd.study.records.untrusted_run), is retrained: its run.json is set aside as
# run.json.damaged or run.json.outdated, so that its job's outputs are incomplete. Not in a dry run (it
# says what a real run would do), nor in a cluster job's own Snakemake (the main one looked already).
if not workflow.remote_exec:
    set_aside_untrusted(
        [f"results/runs/{run}" for run in RUNS],
        [training_inputs(run) for run in RUNS],
        dry_run,
        log=lambda line: print(line, file=sys.stderr),
    )
