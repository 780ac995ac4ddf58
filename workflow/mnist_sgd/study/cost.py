"""What a run costs, estimated from its name before it runs: the training jobs' priorities (longest
first), and which rows an SGD step reads (mnist_sgd.training.sgd).
"""

from .runs import run_config

# A training job's seconds on one CPU thread, roughly: its start (the worker's fork, the data load), and
# per run a fixed part (noise scales, confusion matrix, records), an evaluation per evaluated iteration,
# and per iteration each row a step reads (the batch's, or every row when rows are weighted; see
# mnist_sgd.training.sgd.ScratchSGD) plus autograd for torch. Fitted on a 2-core AMD EPYC (2026-12-04) to
# bench/bench_workflow.py's job seconds for the default study and bench/bench_grid.py's per-run
# breakdown (1000-iteration runs); it orders the jobs and sizes the packs (mnist_sgd.study.packs).
# The kernel table (rule test_kernel) costs a start and, per training row, its products with 10^4 test
# images (25 s for MNIST's 60000 on one thread); a run that reads it saves the difference between the
# dense and the dual evaluation at each iteration.
COST_SECONDS = {
    "start": 0.5,
    "run": 1.0,
    "evaluation": 7e-4,
    "dual_evaluation": 2e-4,
    "row": 7e-7,
    "torch_step": 1e-4,
    "table_row": 4e-4,
}
# The largest batch whose test accuracy the dual form scores with the data set's kernel table
# (mnist_sgd.data.kernel): a step's cost there grows with the batch, the dense product's does not. Measured
# (1000 iterations, one thread, 2-core AMD EPYC): 1.20 s against 1.75 s dense at batch 20, 1.43 s against
# 1.52 s at 50, 3.3 s against 2.0 s at 100.
TABLE_BATCH = 32


def weighs_rows(batch_size, num_rows):
    """Whether a from-scratch step weights every training row by how often the batch drew it, rather
    than copying the batch out (mnist_sgd.training.sgd.ScratchSGD): when the batch covers most rows, the copy
    would read the training set three times where the weighted pass reads it twice."""
    return 3 * batch_size > 2 * num_rows


def reads_kernel_table(config, num_rows):
    """Whether a run of TrainConfig `config` on `num_rows` training rows scores its test accuracy in the
    dual form with the data set's kernel table, where it trains on the CPU (mnist_sgd.training.train):
    a from-scratch run evaluated at every iteration, with batches it copies out, of TABLE_BATCH rows at most."""
    return (
        config.impl == "scratch"
        and config.eval_every == 1
        and config.batch_size <= TABLE_BATCH
        and not weighs_rows(config.batch_size, num_rows)
    )


def table_pays(runs, num_train):
    """Whether the kernel table of a data set of `num_train` training images saves more than it costs
    to the runs `runs` that would read it: a short study (the default one: two such runs) trains
    sooner without it, a grid of small batches much sooner with it."""
    saved = sum(run_config(run).iterations for run in runs) * (
        COST_SECONDS["evaluation"] - COST_SECONDS["dual_evaluation"]
    )
    return saved > COST_SECONDS["start"] + num_train * COST_SECONDS["table_row"]


def estimated_seconds(run, num_train=60000, kernel=False):
    """About how long run `run` trains on one CPU thread (`kernel`: with the kernel table, where it
    would read one): what the scheduler starts first."""
    config = run_config(run)
    rows = config.train_size or num_train
    batch = config.batch_size
    reads = rows if config.impl == "scratch" and weighs_rows(batch, rows) else batch
    evaluations = -(-config.iterations // config.eval_every)
    evaluation = COST_SECONDS["dual_evaluation" if kernel and reads_kernel_table(config, rows) else "evaluation"]
    return (
        COST_SECONDS["start"]
        + COST_SECONDS["run"]
        + evaluations * evaluation
        + config.iterations * reads * COST_SECONDS["row"]
        + (config.iterations * COST_SECONDS["torch_step"] if config.impl == "torch" else 0)
    )
