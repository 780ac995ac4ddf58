# The config, read as meant and validated, and the table of runs it plans (mnist_sgd.study.plan).
import os
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))
from mnist_sgd.execution.host import UnsupportedPlatform, check_platform

try:  # first: on another platform the modules below may not even import
    check_platform()
except UnsupportedPlatform as error:
    raise WorkflowError(str(error))
from mnist_sgd.study.config import (
    ConfigFileError,
    added_sweeps_note,
    check_config_file,
    check_mirrors,
    learning_rates_as_numbers,
    reparse_command_line,
)
from mnist_sgd.execution.host import (
    count_gpus,
    gpu_limit,
    training_threads,
    usable_cpus,
    worker_allowed,
)
from mnist_sgd.study.layout import training_set_size
from mnist_sgd.study.datasets import (
    DATASET_NAME,
    IDX_FILES,
    SweepError,
    dataset_dir,
    datasets,
    targets_of,
)
from mnist_sgd.study.plan import plan
from mnist_sgd.study.runs import (
    RUN_PATTERN as RUN,
    RUN_WILDCARDS,
    TRAINING_SET_WILDCARD,
    configurations,
    parse_run,
)
from mnist_sgd.study.targets import learning_rate_labels, run_labels

with open(os.path.join(workflow.basedir, "config", "config.schema.yaml")) as schema:
    SCHEMA = yaml.safe_load(schema)["properties"]

try:
    for path in [
        os.path.join(workflow.basedir, "config", "config.yaml"),
        *workflow.config_settings.configfiles,
    ]:
        check_config_file(path)
    reparse_command_line(
        config,
        workflow.config_settings.config_args,
        workflow.config_settings.config,
        SCHEMA,
    )
    learning_rates_as_numbers(config)
    validate(config, "../../config/config.schema.yaml")
    check_mirrors(config)
except ConfigFileError as error:
    raise WorkflowError(str(error))
# The warm worker only where Snakemake runs jobs on this machine itself, in this Python environment
# (mnist_sgd.execution.host.worker_allowed). The scripts read this (mnist_sgd.execution.job).
config["worker"] = worker_allowed(
    config["worker"],
    workflow.local_exec,
    workflow.remote_exec,
    set(workflow.deployment_settings.deployment_method),
)
NOTE = added_sweeps_note(
    config,
    workflow.config_settings.configfiles,
    workflow.config_settings.replace_workflow_config,
)
if NOTE:
    print(NOTE, file=sys.stderr)

FORMATS = config["figures"]["formats"]
# The format the report shows (every format is still written): the first raster one, else the first.
REPORT_FORMAT = next((ext for ext in ("png", "svg") if ext in FORMATS), FORMATS[0])


wildcard_constraints:
    **RUN_WILDCARDS,
    group=r"[A-Za-z0-9_]+",
    training_set=TRAINING_SET_WILDCARD,
    dataset=DATASET_NAME,
    ext="|".join(FORMATS),


try:
    # Sizes of the data sets the sweeps use (planning checks the names; a custom data set's folder first).
    SWEPT = {d for s in config["sweeps"].values() for d in s.get("datasets", ["mnist"])}
    NUM_TRAIN = {
        dataset: training_set_size(config, dataset)
        for dataset in SWEPT
        if dataset in datasets(config)
    }
    # Figures that overlay a group of runs (FIGURE_GROUPS): one per sweep, and the configured comparisons.
    SWEEPS, FIGURE_GROUPS = plan(config, NUM_TRAIN)
except SweepError as error:
    raise WorkflowError(str(error))
RUNS = list(dict.fromkeys(run for runs in SWEEPS.values() for run in runs))
SWEEPS_BY_RUN = {run: [s for s, runs in SWEEPS.items() if run in runs] for run in RUNS}
# Each data set's target accuracies (mnist_sgd.analysis.scaling), for the data sets the runs train on.
TARGETS = {
    dataset: targets_of(config)(dataset)
    for dataset in dict.fromkeys(parse_run(run)["dataset"] for run in RUNS)
}

# auto and cuda runs ask for a GPU when this machine has one (a cluster profile sets it per job).
GPUS = count_gpus()
HAS_GPU = GPUS > 0
# How many training jobs hold a GPU at once, on this machine: every GPU times jobs_per_gpu, one number
# to set (mnist_sgd.execution.host.gpu_limit); --resources gpu=N, where given, decides instead.
if workflow.local_exec and not workflow.remote_exec:
    limit = gpu_limit("gpu" in workflow.global_resources, GPUS, config["jobs_per_gpu"])
    if limit is not None:
        workflow.register_resource("gpu", limit)


def kernel_slots():
    """Cores the kernel table's job holds: all of those this run may use but one, which trains or fits the
    optimum meanwhile (the optimum alone held one core of two idle for 12 s before the packs, and the
    table's file writes another); the table's numbers do not depend on its threads. Without --cores
    (a dry run, or a cluster's submit host, whose optimum and packs are cluster jobs): all CPUs.
    """
    try:
        cores = min(workflow.cores, usable_cpus())
    except WorkflowError:
        return usable_cpus()
    return max(1, cores - 1)


def train_slots():
    """Cores a training job holds (mnist_sgd.execution.host.training_threads); on a cluster, the profile sets the
    threads."""
    if not workflow.local_exec:
        return 1
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores (a dry run)
        return 1
    return training_threads(cores)
