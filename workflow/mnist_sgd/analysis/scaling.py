"""Steps to a target accuracy and the critical batch size (Shallue et al., "Measuring the Effects of Data
Parallelism on Neural Network Training", JMLR 2019; McCandlish et al., "An Empirical Model of
Large-Batch Training", 2018).

- A run *reaches* a target at the first evaluated iteration where the median test accuracy over a
  centred window of `window` evaluations (fewer at the curve's ends) is at or above it
  (`steps_to_target`). On a smooth rising curve that is where the curve crosses the target; a spike
  of fewer than half the window's evaluations, as on a batch-1 curve, does not count.
- Per batch size, the *best learning rate* is the one of the grid with the fewest steps to the target,
  in the mean over seeds; a learning rate qualifies only when every seed reached the target (a
  diverged or short seed disqualifies it), and of tied ones the smaller wins (`batch_scaling`).
- Steps against batch size follow S = S_min (1 + B_crit / B): examples E = S B follow
  E = E_min (1 + B / B_crit), so (S / S_min - 1)(E / E_min - 1) = 1, with E_min = S_min B_crit
  (`fit_critical_batch`, needing three batch sizes or more).
"""

import math

import numpy as np
import pandas as pd

# What identifies the training problem a batch-size curve is measured on: one curve per such group.
PROBLEM = ["dataset", "impl", "sampling", "train_size"]
# A training problem's settings that a run may differ in besides the batch size: the grid searched.
CANDIDATE = ["lr", "iterations", "eval_every"]


def steps_column(target):
    return f"steps_to_{target:g}"


def examples_column(target):
    return f"examples_to_{target:g}"


def steps_to_target(iterations, accuracy, target, window=1):
    """The first of `iterations` (the evaluated ones, ascending) at which the median of `accuracy` over
    a centred window of `window` evaluations, truncated at both ends, is >= `target`; None if none."""
    accuracy = np.asarray(accuracy, dtype=float)
    if accuracy.size == 0:
        return None
    half = max(0, (int(window) - 1) // 2)
    if half:
        padded = np.pad(accuracy, half, constant_values=np.nan)
        accuracy = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    reached = np.flatnonzero(accuracy >= target)
    return int(iterations[reached[0]]) if reached.size else None


def run_steps(metrics, batch_size, targets, window):
    """{column: value} of a run's steps and examples (steps x batch size) to each of `targets`, from its
    metrics frame (iteration, test_accuracy); NaN where the run never reached the target."""
    evaluated = metrics.dropna(subset=["test_accuracy"])
    row = {}
    for target in targets:
        steps = steps_to_target(
            evaluated["iteration"].to_numpy(), evaluated["test_accuracy"].to_numpy(), target, window
        )
        row[steps_column(target)] = math.nan if steps is None else steps
        row[examples_column(target)] = math.nan if steps is None else steps * batch_size
    return row


def fit_critical_batch(batch_sizes, steps):
    """(S_min, B_crit) of S = S_min (1 + B_crit / B) fitted to the points (batch_sizes, steps): linear
    least squares of S = a + b / B with each point weighted by 1 / S (its relative error, as on a log
    axis), S_min = a, B_crit = b / a. NaN for fewer than three points, or a fit that is not a
    decreasing curve (a <= 0 or b < 0)."""
    batch_sizes, steps = np.asarray(batch_sizes, dtype=float), np.asarray(steps, dtype=float)
    if len(batch_sizes) < 3:
        return math.nan, math.nan
    design = np.stack([np.ones_like(batch_sizes), 1 / batch_sizes], axis=1) / steps[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(steps), rcond=None)
    if a <= 0 or b < 0:
        return math.nan, math.nan
    return float(a), float(b / a)


def _steps_of(runs, target):
    return runs[steps_column(target)].astype(float)


def batch_scaling(table, targets_of):
    """One row per training problem (PROBLEM), target and batch size of the finished runs in `table` (a
    summary table with the steps columns): the best learning rate (see the module) and its seeds' steps
    (mean, std, min, max) and examples (mean); blank where no learning rate reached the target with every
    seed. `targets_of(dataset)` lists a data set's targets."""
    finished = table[table["status"].isin(["ok", "diverged"])]
    rows = []
    for problem, runs in finished.groupby(PROBLEM, sort=True, dropna=False):
        for target in targets_of(problem[0]):
            if steps_column(target) not in runs:
                continue
            for batch_size, at_batch in runs.groupby("batch_size", sort=True):
                row = dict(zip(PROBLEM, problem), target=target, batch_size=int(batch_size))
                candidates = []
                for candidate, seeds in at_batch.groupby(CANDIDATE, sort=True):
                    steps = _steps_of(seeds, target)
                    if steps.notna().all():
                        candidates.append((steps.mean(), candidate[0], candidate, seeds))
                row.update(lrs_tried=at_batch["lr"].nunique(), lrs_reached=len({c[1] for c in candidates}))
                if candidates:
                    _, lr, candidate, seeds = min(candidates, key=lambda c: (c[0], c[1]))
                    steps = _steps_of(seeds, target)
                    row.update(
                        best_lr=lr,
                        iterations=candidate[1],
                        n_seeds=len(seeds),
                        steps_mean=steps.mean(),
                        steps_std=steps.std(),
                        steps_min=steps.min(),
                        steps_max=steps.max(),
                        examples_mean=steps.mean() * batch_size,
                        seeds_runs=";".join(seeds["run"]),
                    )
                rows.append(row)
    columns = PROBLEM + ["target", "batch_size", "lrs_tried", "lrs_reached", "best_lr", "iterations", "n_seeds"]
    columns += ["steps_mean", "steps_std", "steps_min", "steps_max", "examples_mean", "seeds_runs"]
    return pd.DataFrame(rows, columns=columns)


def critical_batch(scaling, table):
    """One row per training problem and target of `scaling` (a batch_scaling table): the fit of S(B) to
    the mean steps of the batch sizes that reached the target (S_min, E_min, B_crit), B_crit's standard
    deviation over the fits to each seed's steps, and the gradient noise scale measured by `table`'s
    runs (a summary table): the median over the best learning rate's runs of each batch size, at the
    start (W = 0: the same for every run of the problem) and at the end of training."""
    rows = []
    by_run = table.set_index("run")
    for key, curve in scaling.dropna(subset=["steps_mean"]).groupby(PROBLEM + ["target"], sort=True, dropna=False):
        s_min, b_crit = fit_critical_batch(curve["batch_size"], curve["steps_mean"])
        row = dict(zip(PROBLEM + ["target"], key), n_batch_sizes=len(curve))
        row.update(
            batch_sizes=";".join(str(b) for b in curve["batch_size"]),
            s_min=s_min,
            e_min=s_min * b_crit,
            b_crit=b_crit,
        )
        runs = [run.split(";") for run in curve["seeds_runs"]]
        per_seed = [
            fit_critical_batch(curve["batch_size"], [by_run.loc[seeds[k], steps_column(key[-1])] for seeds in runs])[1]
            for k in range(min(map(len, runs)))
        ]
        per_seed = [value for value in per_seed if np.isfinite(value)]
        row["b_crit_std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
        measured = by_run.loc[[run for seeds in runs for run in seeds]]
        for when in ("start", "end"):
            for scale in ("b_simple", "b_noise"):
                column = f"{scale}_{when}"
                row[column] = float(measured[column].median()) if column in measured else math.nan
        rows.append(row)
    columns = PROBLEM + ["target", "n_batch_sizes", "batch_sizes", "s_min", "e_min", "b_crit", "b_crit_std"]
    columns += ["b_simple_start", "b_noise_start", "b_simple_end", "b_noise_end"]
    return pd.DataFrame(rows, columns=columns)
