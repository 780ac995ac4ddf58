# Config validation, the table of runs, and the functions that build target lists.
import hashlib
import os
import re
import sys

import yaml
from snakemake.common.configfile import load_configfile
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))
from mnist_sgd.host import (
    UnsupportedPlatform,
    check_platform,
    count_gpus,
    training_threads,
)

try:
    check_platform()
except UnsupportedPlatform as error:
    raise WorkflowError(str(error))
from mnist_sgd.configfile import ConfigFileError, check_config_file, check_config_text
from mnist_sgd.imports import code_digest as script_digest
from mnist_sgd.records import set_aside_damaged
from mnist_sgd.scaling import PROBLEM
from mnist_sgd.study import (
    BUILTIN_DATASETS,
    DATASET_NAME,
    IDX_FILES,
    RUN_PATTERN as RUN,
    RUN_WILDCARDS,
    TRAINING_SET_WILDCARD,
    SweepError,
    configurations,
    dataset_dir,
    dataset_of,
    dataset_sha256,
    datasets,
    estimated_seconds,
    idx_image_count,
    learning_rate_labels,
    learning_rate_lines,
    parse_run,
    parse_training_set,
    plan,
    run_labels,
    targets_of,
    training_set_name,
)

with open(os.path.join(workflow.basedir, "config", "config.schema.yaml")) as schema:
    SCHEMA = yaml.safe_load(schema)["properties"]


def command_line_config():
    """`--config`'s values as a config file would read them. Snakemake parses a nested value
    (`sweeps={tiny: {...}}`) with YAML's base loader, which leaves every scalar a string ('300') and
    drops the quotes that said a value is one, and keeps a top-level `worker=false` the string 'false':
    parse the value as written again, so that `iterations: 300` is a number, `worker=false` a boolean,
    and `title: 'lr #2'` or `title: "2024-01-01"` stay the strings quoted.
    """
    for entry in workflow.config_settings.config_args or ():
        key, _, value = entry.partition("=")
        try:
            check_config_text(value, f"--config {key}")
        except ConfigFileError as error:
            raise WorkflowError(str(error))
        given = workflow.config_settings.config.get(key)
        if isinstance(given, (dict, list)):
            update_config(config, {key: yaml.safe_load(value)})
        elif isinstance(given, str) and "string" not in str(
            SCHEMA.get(key, {}).get("type", "string")
        ):
            config[key] = yaml.safe_load(value)


# YAML 1.1 (PyYAML's) reads 1e-3 and 1.5e2 as strings, for want of a dot or of the exponent's sign: as a
# learning rate each means the number.
FLOAT_WITHOUT_DOT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def learning_rates_as_numbers(config):
    """Each sweep's and comparison selector's `lr` written like 1e-3, as the number it means."""
    number = lambda v: (
        float(v) if isinstance(v, str) and FLOAT_WITHOUT_DOT.fullmatch(v) else v
    )
    places = list((config.get("sweeps") or {}).values())
    for comparison in ((config.get("figures") or {}).get("comparisons") or {}).values():
        places += comparison.get("runs") or [] if isinstance(comparison, dict) else []
    for place in places:
        if isinstance(place, dict) and "lr" in place:
            lr = place["lr"]
            place["lr"] = (
                [number(v) for v in lr] if isinstance(lr, list) else number(lr)
            )


for path in [
    os.path.join(workflow.basedir, "config", "config.yaml"),
    *workflow.config_settings.configfiles,
]:
    try:
        check_config_file(path)
    except ConfigFileError as error:
        raise WorkflowError(str(error))

command_line_config()
learning_rates_as_numbers(config)
validate(config, "../../config/config.schema.yaml")
# The warm worker only where Snakemake runs jobs on this machine itself: a job of a cluster or cloud
# executor (SLURM, LSF, Kubernetes, ...; the job's own Snakemake runs in remote mode) could leave one
# behind when its allocation ends. The scripts read this (mnist_sgd.job).
config["worker"] = config["worker"] and workflow.local_exec and not workflow.remote_exec

# A config file of one's own with sweeps adds them to config/config.yaml's unless the workflow's
# config is replaced: say so, since running the default study too is rarely what is meant.
OWN_SWEEPS = {
    name
    for path in workflow.config_settings.configfiles
    for name in (load_configfile(path) or {}).get("sweeps", {})
}
if OWN_SWEEPS and not workflow.config_settings.replace_workflow_config:
    ADDED = sorted(set(config["sweeps"]) - OWN_SWEEPS)
    if ADDED:
        print(
            f"note: config/config.yaml's sweeps {ADDED} run too; to run only the sweeps of "
            "your config file, add --replace-workflow-config",
            file=sys.stderr,
        )

FORMATS = config["figures"]["formats"]
# The format the report shows (every format is still written): the first raster one, else the first.
REPORT_FORMAT = next((ext for ext in ("png", "svg") if ext in FORMATS), FORMATS[0])


def train_slots():
    """Cores a training job holds (mnist_sgd.host.training_threads); on a cluster, the profile sets the
    threads."""
    if not workflow.local_exec:
        return 1
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores (a dry run)
        return 1
    return training_threads(cores)


# auto and cuda runs ask for a GPU when this machine has one (a cluster profile sets it per job).
HAS_GPU = count_gpus() > 0


wildcard_constraints:
    **RUN_WILDCARDS,
    group=r"[A-Za-z0-9_]+",
    training_set=TRAINING_SET_WILDCARD,
    dataset=DATASET_NAME,
    ext="|".join(FORMATS),


MIRRORS = {"data_mirror": config["data_mirror"]}
MIRRORS.update({f"mirrors[{i}]": m for i, m in enumerate(config["mirrors"])})
for key, mirror in MIRRORS.items():
    if mirror and "://" not in mirror and not os.path.isdir(mirror):
        raise WorkflowError(
            f"config error: {key}={mirror!r}: no such folder; give the folder holding the "
            "IDX files (in a sub-folder per data set, or MNIST's directly), or a URL"
        )


def raw_file(dataset, name):
    """Where rule download_mnist writes IDX file `name` of `dataset`."""
    return f"results/data/raw/{dataset_dir(dataset)}{name}"


def raw_files(dataset):
    """The four IDX files of `dataset`, in IDX_FILES' order (what format_mnist and a cache rebuild read)."""
    return [raw_file(dataset, name) for name in IDX_FILES]


def training_set_size(dataset):
    """Images in a data set's training set, from the header of its downloaded images file, else of the
    file in a custom data set's folder; 60000 for a built-in data set not yet downloaded (all have
    60000). Planning needs it, so a damaged file stops planning with its name and the fix.
    """
    path = raw_file(dataset, "train-images-idx3-ubyte")
    if os.path.exists(path):
        return idx_image_count(
            path,
            "delete it, and the workflow fetches and verifies it again when it needs it",
        )
    if dataset in BUILTIN_DATASETS:
        return 60000
    custom = config["custom_datasets"][dataset]
    if not os.path.isdir(custom["path"]):
        return None  # plan() says the folder is missing
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        path = os.path.join(custom["path"], name)
        if os.path.exists(path):
            return idx_image_count(
                path, f"replace it with a good copy (custom_datasets.{dataset}.path)"
            )
    raise SweepError(
        f"config error: custom_datasets.{dataset}.path={custom['path']!r} holds no train-images-idx3-ubyte "
        "(gzip or plain); put the data set's four IDX files there"
    )


try:
    # Sizes of the data sets the sweeps use (planning checks the names; a custom data set's folder first).
    SWEPT = {d for s in config["sweeps"].values() for d in s.get("datasets", ["mnist"])}
    NUM_TRAIN = {
        dataset: training_set_size(dataset)
        for dataset in SWEPT
        if dataset in datasets(config)
    }
    # Figures that overlay a group of runs (FIGURE_GROUPS): one per sweep, and the configured comparisons.
    SWEEPS, FIGURE_GROUPS = plan(config, NUM_TRAIN)
except SweepError as error:
    raise WorkflowError(str(error))
RUNS = list(dict.fromkeys(run for runs in SWEEPS.values() for run in runs))
# A run whose records are torn or edited (mnist_sgd.records.damaged_run) is retrained: its run.json is
# set aside as run.json.damaged, so that its job's outputs are incomplete. Not in a dry run (it says
# what a real run would do), nor in a cluster job's own Snakemake (the main one looked already).
if not workflow.remote_exec:
    set_aside_damaged(
        [f"results/runs/{run}" for run in RUNS],
        workflow.dryrun,
        log=lambda line: print(line, file=sys.stderr),
    )
SWEEPS_BY_RUN = {run: [s for s, runs in SWEEPS.items() if run in runs] for run in RUNS}
# Each data set's target accuracies (mnist_sgd.scaling), for the data sets the runs train on.
TARGETS = {
    dataset: targets_of(config)(dataset)
    for dataset in dict.fromkeys(parse_run(run)["dataset"] for run in RUNS)
}

SCRIPTS = os.path.join(workflow.basedir, "workflow", "scripts")


def code_digest(script):
    """The code digest (mnist_sgd.imports.code_digest) of `workflow/scripts/<script>.py`."""
    return script_digest(os.path.join(SCRIPTS, f"{script}.py"))


def data_digest(dataset):
    """What a data set's cached tensors are a function of, besides the code: the verified content of its
    IDX files (for MNIST the same digest as before there were other data sets)."""
    pins = dataset_sha256(config, dataset)
    return hashlib.sha256(
        "".join(pins[name] for name in IDX_FILES).encode()
    ).hexdigest()[:16]


def cache_file(dataset):
    """The cached tensors of `dataset` (rule format_mnist)."""
    return f"results/data/{dataset}.pt"


def data_input(dataset, outputs):
    """A training or optimum job's input: none, ever; where some of the job's `outputs` are missing and
    the cache of `dataset` is too, it first waits for the cache (checkpoint format_mnist).

    Snakemake reruns every job downstream of one that runs, ancient input or not (snakemake#946), and a
    job whose set of inputs changed. With the cache as an input, deleting the cache or the raw files,
    which are rebuilt bit-identical from checksum-pinned files, would retrain every finished run. So the
    cache is never an input: a job that must run waits for it through the checkpoint, and one that runs
    because its code or parameters changed loads it itself, rebuilding it from the IDX files if it is
    missing (mnist_sgd.data.load_cache). The cache is a function of the data's checksums, in the job's
    parameters, and of its version, in the code digest.
    """
    # The cache first: it is there for almost every job, and then its outputs need no look.
    if not os.path.exists(cache_file(dataset)) and not all(
        map(os.path.exists, outputs)
    ):
        # Only then: a checkpoint asked for by every job costs planning seconds.
        checkpoints.format_mnist.get(dataset=dataset)
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


def rst_text(text):
    """`text` as reStructuredText that reads as written: one line, every markup character escaped,
    so that a title from the config never becomes markup (a directive, a link, raw HTML) in the report.
    """
    return re.sub(r"([^0-9A-Za-z ])", r"\\\1", " ".join(text.split()))


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


def run_files(runs, name):
    return [f"results/runs/{run}/{name}" for run in runs]


# What a training job writes for each run: the records every later rule reads.
RUN_RECORDS = ("metrics.csv", "run.json", "weights.npy")


def run_records(runs, optima=True):
    """Each run's records and its training set's optimum: targets of `all` and of each sweep's rule, so
    that one deleted by hand (or lost to a full quota) is made again by the next run, although the
    figures and summary drawn from it are still there (Snakemake does not remake an intermediate file
    whose consumers are up to date)."""
    records = [f"results/runs/{run}/{name}" for run in runs for name in RUN_RECORDS]
    return records + (
        list(dict.fromkeys(optimum_file(run) for run in runs)) if optima else []
    )


def curvature_file(run):
    """The example curvature of the training set run `run` trains on (checkpoint optimum writes it)."""
    return f"results/optimum/{training_set_name(run)}.curvature.npz"


def curvature_input(run):
    """A training job's input for its noise scales: none, ever (as data_input, and for the same reason:
    a new optimum, after a code edit, must not retrain every run). A run that must train and measures
    its noise scales waits for its training set's curvature (checkpoint optimum) when it is missing; a
    run that retrains because its code changed computes it itself if it is gone (mnist_sgd.train.run).
    """
    if (
        config["noise_points"]
        and not os.path.exists(curvature_file(run))
        and not all(map(os.path.exists, run_records([run], optima=False)))
    ):
        checkpoints.optimum.get(training_set=training_set_name(run))
    return []


def optimum_file(run):
    """The least-squares optimum of the training set run `run` trains on (rule optimum)."""
    return f"results/optimum/{training_set_name(run)}.json"


def run_figures(runs):
    """Each run's curves, and what its model learned (weights and confusion matrix)."""
    return [
        path
        for run in runs
        for name in (f"{run}", f"{run}/weights", f"{run}/confusion")
        for path in expand(f"results/figures/runs/{name}.{{ext}}", ext=FORMATS)
    ]


def drawn_run_by_run(runs):
    """Whether a group of `runs` gets each run's own figures: it has at most figures.run_figures runs.
    A bigger sweep's hundreds of per-run figures are drawn only when asked for, by path.
    """
    return len(runs) <= config["figures"]["run_figures"]


def scaling_figures(runs):
    """The analysis figures a group of `runs` supports (docs/scaling.md): steps to target where, on one
    training problem, it has two batch sizes or more and its data set has targets; the noise scales
    where runs measure them; accuracy against training-set size where one data set has three sizes.
    """
    problems, sizes = {}, {}
    for run in runs:
        params = parse_run(run)
        problem = tuple(params[key] for key in PROBLEM)
        problems.setdefault(problem, set()).add(params["batch_size"])
        sizes.setdefault(params["dataset"], set()).add(params["train_size"])
    kinds = []
    if any(len(b) > 1 and TARGETS[problem[0]] for problem, b in problems.items()):
        kinds.append("steps_to_target")
    if config["noise_points"]:
        kinds.append("noise_scale")
    if any(len(s) > 2 for s in sizes.values()):
        kinds.append("train_size")
    return kinds


def group_figures(group):
    """The figures of a sweep or comparison: its overlays (and the learning-rate figure where its runs
    have several), the analysis figures it supports, and, for a small group, each of its runs' own
    figures."""
    runs = FIGURE_GROUPS[group][1]
    several = any(len(line) > 1 for line in learning_rate_lines(runs))
    kinds = ["curves", "final_accuracy"] + (["learning_rate"] if several else [])
    kinds += scaling_figures(runs)
    overlays = [
        f"results/figures/{group}/{kind}.{ext}" for kind in kinds for ext in FORMATS
    ]
    return overlays + (run_figures(runs) if drawn_run_by_run(runs) else [])


def all_figures():
    """Every group's figures and the wall-time figure, each once."""
    figures = dict.fromkeys(f for group in FIGURE_GROUPS for f in group_figures(group))
    return list(figures) + [f"results/figures/wall_time.{ext}" for ext in FORMATS]


def write_partial_summary():
    """After a failed run (e.g. with --keep-going): results/summary_partial.csv lists every run of the
    configuration with its status (ok, diverged, failed with its log, or missing), and the failed
    and missing runs are printed. The next complete summary removes the file."""
    from mnist_sgd.summary import summarize, write_summary

    table = summarize(
        run_files(RUNS, "run.json"),
        SWEEPS_BY_RUN,
        [f"results/logs/train/{run}.log" for run in RUNS],
        [optimum_file(run) for run in RUNS],
        damaged_ok=True,
    )
    write_summary(table, "results/summary_partial.csv")
    incomplete = table[table["status"].isin(["failed", "missing", "damaged"])]
    print(
        f"{len(incomplete)} of {len(table)} runs have no result; every run's status is in "
        "results/summary_partial.csv",
        file=sys.stderr,
    )
    for row in incomplete.itertuples():
        where = {"failed": f" (log: {row.log})", "damaged": f" ({row.log})"}.get(
            row.status, ""
        )
        print(f"  {row.status}: {row.run}{where}", file=sys.stderr)
