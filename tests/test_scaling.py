"""Steps to a target, the best learning rate per batch size and the critical-batch fit (mnist_sgd.analysis.scaling)."""

import math

import numpy as np
import pandas as pd
import pytest

from mnist_sgd.analysis.scaling import batch_scaling, critical_batch, fit_critical_batch, run_steps, steps_to_target

ITERATIONS = np.arange(1, 201)


def test_a_curve_that_never_reaches_the_target_has_no_steps():
    assert steps_to_target(ITERATIONS, np.linspace(0.1, 0.79, 200), 0.8, window=21) is None
    assert steps_to_target([], [], 0.8) is None


def test_a_curve_above_the_target_from_the_start_reaches_it_at_the_first_iteration():
    assert steps_to_target(ITERATIONS, np.full(200, 0.9), 0.8, window=21) == 1
    assert steps_to_target(ITERATIONS[4::5], np.full(40, 0.9), 0.8, window=5) == 5  # evaluated every 5th


def test_a_smooth_rising_curve_reaches_the_target_where_it_crosses_it_whatever_the_window():
    accuracy = np.linspace(0.0, 0.99, 200)  # crosses 0.5 between iteration 101 (0.4975) and 102
    for window in (1, 5, 21, 51):
        assert steps_to_target(ITERATIONS, accuracy, 0.5, window) == 102


def test_noisy_crossings_count_only_once_the_median_of_the_window_is_above():
    rng = np.random.default_rng(0)
    accuracy = np.full(200, 0.70) + rng.uniform(-0.02, 0.02, 200)
    accuracy[[10, 30, 31, 60]] = 0.85  # spikes: fewer than half of any 21-evaluation window
    accuracy[150:] = 0.82 + rng.uniform(-0.005, 0.005, 50)  # where it really gets there
    assert steps_to_target(ITERATIONS, accuracy, 0.8, window=1) == 11  # the raw curve is fooled
    assert steps_to_target(ITERATIONS, accuracy, 0.8, window=21) == 151
    # A curve that hovers at the target: reached once most of the window is above it.
    hovering = np.where(ITERATIONS % 3 == 0, 0.79, 0.81)  # two in three above
    assert steps_to_target(ITERATIONS, hovering, 0.8, window=21) == 1


def test_run_steps_counts_examples_and_leaves_unreached_targets_blank():
    metrics = pd.DataFrame({"iteration": [1, 2, 3, 4], "train_loss": 1.0, "test_accuracy": [0.5, np.nan, 0.9, 0.9]})
    row = run_steps(metrics, batch_size=8, targets=[0.8, 0.95], window=1)
    assert row["steps_to_0.8"] == 3 and row["examples_to_0.8"] == 24
    assert math.isnan(row["steps_to_0.95"]) and math.isnan(row["examples_to_0.95"])


@pytest.mark.parametrize("s_min, b_crit", [(100.0, 50.0), (2000.0, 7.5), (30.0, 1000.0)])
def test_the_fit_recovers_s_min_and_b_crit_from_exact_and_noisy_curves(s_min, b_crit):
    batch_sizes = 2.0 ** np.arange(0, 13)
    steps = s_min * (1 + b_crit / batch_sizes)
    assert fit_critical_batch(batch_sizes, steps) == pytest.approx((s_min, b_crit), rel=1e-9)
    noisy = steps * np.exp(np.random.default_rng(1).normal(0, 0.03, len(steps)))  # 3% noise per point
    found = fit_critical_batch(batch_sizes, noisy)
    assert found[0] == pytest.approx(s_min, rel=0.1) and found[1] == pytest.approx(b_crit, rel=0.15)
    # (S/S_min - 1)(E/E_min - 1) = 1 on the fitted curve, with E = S B and E_min = S_min B_crit.
    s, e = steps, steps * batch_sizes
    np.testing.assert_allclose((s / s_min - 1) * (e / (s_min * b_crit) - 1), 1)


def test_the_fit_needs_three_points_and_a_decreasing_curve():
    assert all(map(math.isnan, fit_critical_batch([1, 2], [10, 5])))
    assert all(map(math.isnan, fit_critical_batch([1, 2, 4], [5, 10, 20])))  # steps grow with the batch


def table_of(runs):
    """A summary table of runs given as (batch size, lr, seed, steps to 0.8 or None, b_noise at the end)."""
    rows = []
    for batch_size, lr, seed, steps, b_noise in runs:
        rows.append(
            dict(
                run=f"scratch/trainall_batch{batch_size}_lr{lr}_it100_seed{seed}",
                status="ok",
                dataset="mnist",
                impl="scratch",
                sampling="with_replacement",
                train_size=60000,
                batch_size=batch_size,
                lr=lr,
                iterations=100,
                eval_every=1,
                seed=seed,
                b_simple_start=5.0,
                b_noise_start=4.0,
                b_simple_end=2 * b_noise,
                b_noise_end=b_noise,
                **{"steps_to_0.8": math.nan if steps is None else steps},
            )
        )
    return pd.DataFrame(rows)


def test_the_best_learning_rate_needs_every_seed_and_ties_go_to_the_smaller():
    table = table_of(
        [
            (1, 0.01, 0, 80, 10),
            (1, 0.01, 1, 90, 10),  # mean 85
            (1, 0.03, 0, 40, 10),
            (1, 0.03, 1, None, 10),  # faster, but one seed never got there
            (8, 0.01, 0, 30, 20),
            (8, 0.01, 1, 30, 20),  # a tie at 30...
            (8, 0.03, 0, 20, 20),
            (8, 0.03, 1, 40, 20),  # ...with this one: the smaller lr wins
            (64, 0.01, 0, None, 30),
            (64, 0.03, 0, None, 30),  # never reached
        ]
    )
    scaling = batch_scaling(table, lambda dataset: [0.8]).set_index("batch_size")
    assert scaling.loc[1, "best_lr"] == 0.01 and scaling.loc[1, "steps_mean"] == 85
    assert (scaling.loc[1, "steps_min"], scaling.loc[1, "steps_max"]) == (80, 90)
    assert scaling.loc[1, ["lrs_tried", "lrs_reached"]].tolist() == [2, 1]
    assert scaling.loc[8, "best_lr"] == 0.01 and scaling.loc[8, "examples_mean"] == 240
    assert math.isnan(scaling.loc[64, "best_lr"]) and scaling.loc[64, "lrs_reached"] == 0


def test_the_critical_batch_table_fits_the_best_steps_and_their_seeds():
    s_min, b_crit = 50.0, 16.0
    runs = []
    for batch_size in (1, 4, 16, 64, 256):
        for seed, factor in enumerate((0.9, 1.1)):
            runs.append((batch_size, 0.01, seed, s_min * (1 + b_crit / batch_size) * factor, batch_size))
    table = table_of(runs)
    fits = critical_batch(batch_scaling(table, lambda dataset: [0.8]), table)
    assert len(fits) == 1
    fit = fits.iloc[0]
    assert (fit["s_min"], fit["b_crit"]) == pytest.approx((s_min, b_crit))
    assert fit["e_min"] == pytest.approx(s_min * b_crit)
    assert fit["b_crit_std"] == pytest.approx(0, abs=1e-9)  # each seed's curve is the same shape
    assert fit["b_noise_start"] == 4.0 and fit["b_noise_end"] == 16  # the median over the curve's runs
