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
COST_SECONDS = {"start": 0.5, "run": 1.0, "evaluation": 7e-4, "row": 7e-7, "torch_step": 1e-4}


def weighs_rows(batch_size, num_rows):
    """Whether a from-scratch step weights every training row by how often the batch drew it, rather
    than copying the batch out (mnist_sgd.training.sgd.ScratchSGD): when the batch covers most rows, the copy
    would read the training set three times where the weighted pass reads it twice."""
    return 3 * batch_size > 2 * num_rows


def estimated_seconds(run, num_train=60000):
    """About how long run `run` trains on one CPU thread: what the scheduler starts first."""
    config = run_config(run)
    rows = config.train_size or num_train
    batch = config.batch_size
    reads = rows if config.impl == "scratch" and weighs_rows(batch, rows) else batch
    evaluations = -(-config.iterations // config.eval_every)
    return (
        COST_SECONDS["start"]
        + COST_SECONDS["run"]
        + evaluations * COST_SECONDS["evaluation"]
        + config.iterations * reads * COST_SECONDS["row"]
        + (config.iterations * COST_SECONDS["torch_step"] if config.impl == "torch" else 0)
    )
