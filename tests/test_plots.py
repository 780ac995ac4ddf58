"""Figures at scale: bounded in pixels and memory whatever the dpi and the number of runs, and a grid of
batch sizes and learning rates drawn as small multiples and a heatmap."""

import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import REPO
from mnist_sgd.figures import group
from mnist_sgd.figures.common import MAX_FIGURE_PIXELS, Configuration
from mnist_sgd.figures.grid import grid_panels, plot_accuracy_heatmap, plot_grid_curves
from mnist_sgd.study.records import Resolved, RunInfo
from mnist_sgd.study.runs import TrainConfig


def test_a_figure_of_many_runs_at_a_high_dpi_is_drawn_within_the_pixel_bound_and_says_so(tmp_path):
    """140 runs' wall times at dpi 1200 took 5.66 GB; drawn within MAX_FIGURE_PIXELS they take a fraction."""
    script = f"""
import sys
sys.path.insert(0, {str(REPO / "workflow")!r})
import pandas as pd
from mnist_sgd.figures.group import plot_wall_time
summary = pd.DataFrame({{
    "run": [f"scratch/trainall_batch{{b}}_lr0.001_it1000_seed0" for b in range(1, 141)],  # a bar each
    "wall_seconds": 1.5, "device": "cpu"}})
plot_wall_time(summary, [{str(tmp_path / "wall_time.png")!r}, {str(tmp_path / "wall_time.pdf")!r}], dpi=1200)
# VmHWM: this process's own peak (ru_maxrss would also count the forking test process's).
print(next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    width, height = (int.from_bytes((tmp_path / "wall_time.png").read_bytes()[at : at + 4], "big") for at in (16, 20))
    assert width * height <= MAX_FIGURE_PIXELS and height > 4 * width > 8_000
    assert "at dpi 1200 would be" in result.stderr and "the most within 25 million" in result.stderr
    assert int(result.stdout) < 1000, result.stdout  # MB of peak RSS


def test_the_wall_time_of_a_grid_is_a_bar_per_configuration_and_of_single_runs_a_bar_per_run(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(group, "save", lambda fig, paths, dpi: drawn.append(fig))
    runs = [f"scratch/trainall_batch{b}_lr{lr}_it1000_seed{s}" for b in (1, 10) for lr in (0.01, 0.1) for s in range(5)]
    seconds = [float(i) for i in range(len(runs))]
    group.plot_wall_time(pd.DataFrame({"run": runs, "wall_seconds": seconds, "device": "cpu"}), [], 100)
    group.plot_wall_time(pd.DataFrame({"run": runs[::5], "wall_seconds": seconds[::5], "device": "cpu"}), [], 100)
    grid, single = (fig.axes[0] for fig in drawn)
    assert [t.get_text() for t in grid.get_yticklabels()] == [
        f"scratch/trainall_batch{b}_lr{lr}_it1000" for b in (1, 10) for lr in (0.01, 0.1)
    ]
    assert [bar.get_width() for bar in grid.patches] == [2.0, 7.0, 12.0, 17.0]  # the means over five seeds
    assert "mean 17.00 s (5 seeds) on cpu" in [t.get_text() for t in grid.texts]
    assert [t.get_text() for t in single.get_yticklabels()] == runs[::5]
    assert [bar.get_width() for bar in single.patches] == seconds[::5]


def configuration(batch_size, lr, seeds, diverged_seed=None):
    """A Configuration of synthetic runs (batch_size, lr) over `seeds`; `diverged_seed` diverges at 20."""
    metrics, infos = [], []
    for seed in seeds:
        iterations = 20 if seed == diverged_seed else 100
        loss = np.linspace(0.5, 0.1, iterations)
        if seed == diverged_seed:
            loss[-1] = np.inf
        accuracy = np.linspace(0.1, 0.8 + 0.01 * seed, iterations)
        metrics.append(
            pd.DataFrame({"iteration": np.arange(1, iterations + 1), "train_loss": loss, "test_accuracy": accuracy})
        )
        info = RunInfo(
            params=TrainConfig(batch_size=batch_size, lr=lr, seed=seed, iterations=100),
            resolved=Resolved(300, "cpu", 1, False),
            status="diverged" if seed == diverged_seed else "ok",
            diverged_at_iteration=20 if seed == diverged_seed else None,
            iterations_done=iterations,
            final_train_loss=None if seed == diverged_seed else 0.1,
            final_test_accuracy=float(accuracy[-1]),
            best_test_accuracy=float(accuracy.max()),
            device_name="cpu",
            git_commit=None,
            git_dirty=None,
            versions={},
            host="host",
            slurm_job_id=None,
            setup_seconds=0.0,
            wall_seconds=1.0,
            seconds_per_iteration=0.01,
            peak_rss_mb=1.0,
            gpu_peak_allocated_mb=None,
        )
        infos.append(info)
    return Configuration(f"batch {batch_size}, lr {lr}", metrics, infos)


def test_a_batch_size_by_learning_rate_grid_gets_small_multiples_and_a_heatmap(tmp_path):
    grid = [configuration(b, lr, [0, 1], 0 if (b, lr) == (1, 0.1) else None) for b in (1, 10) for lr in (0.01, 0.1)]
    panels = grid_panels(grid)
    assert list(panels) == ["MNIST, all training images, scratch, 100 iterations"]
    assert set(panels[next(iter(panels))]) == {(1, 0.01), (1, 0.1), (10, 0.01), (10, 0.1)}
    assert grid_panels(grid[:2]) is None  # one batch size: not a grid (bars and an overlay)
    assert grid_panels([configuration(b, 0.01, [0]) for b in (1, 10, 100)]) is None  # one learning rate
    plot_grid_curves(panels, "Grid", [tmp_path / "curves.png"], dpi=40)
    plot_accuracy_heatmap(panels, "Grid", [tmp_path / "heatmap.png", tmp_path / "heatmap.svg"], dpi=40)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "heatmap.svg").read_text()
    assert "1 div." in svg and "learning rate" in svg and "batch size" in svg  # the diverged seed's cell says so


def scaling_table(batch_sizes=(1, 4, 16, 64), seeds=(0, 1), train_sizes=(60000,), reached=True):
    """A summary table (mnist_sgd.analysis.summary) of runs on S = 50 (1 + 16 / B) steps to 0.8, with noise scales."""
    rows = []
    for train_size in train_sizes:
        for batch_size in batch_sizes:
            for seed in seeds:
                steps = 50 * (1 + 16 / batch_size) * (1 + 0.05 * seed) if reached else np.nan
                name = "all" if train_size == 60000 else train_size
                rows.append(
                    dict(
                        run=f"scratch/train{name}_batch{batch_size}_lr0.01_it1000_seed{seed}",
                        status="ok",
                        dataset="mnist",
                        impl="scratch",
                        sampling="with_replacement",
                        train_size=train_size,
                        batch_size=batch_size,
                        lr=0.01,
                        iterations=1000,
                        eval_every=1,
                        seed=seed,
                        final_test_accuracy=0.8 + 0.01 * np.log10(train_size),
                        optimum_test_accuracy=0.85,
                        optimum_rank=min(train_size, 712),
                        b_simple_start=9.0,
                        b_noise_start=8.0,
                        b_simple_end=30.0,
                        b_noise_end=20.0,
                        **{"steps_to_0.8": steps},
                    )
                )
    return pd.DataFrame(rows)


def test_the_scaling_figures_draw_the_fit_the_noise_scale_and_the_size_curve(tmp_path):
    from mnist_sgd.analysis.scaling import batch_scaling, critical_batch
    from mnist_sgd.figures.scaling import plot_noise_scales, plot_steps_to_target, plot_train_size_curve

    table = scaling_table()
    scaling = batch_scaling(table, lambda dataset: [0.8])
    plot_steps_to_target(scaling, critical_batch(scaling, table), "Scaling", [tmp_path / "steps.svg"], dpi=40)
    svg = (tmp_path / "steps.svg").read_text()
    assert "B_crit = 16" in svg and "B_noise at the end 20" in svg and "B_noise at the start 8" in svg
    assert "perfect scaling" in svg
    # Nothing reached: the figure is still written, and says why it is empty.
    table = scaling_table(reached=False)
    scaling = batch_scaling(table, lambda dataset: [0.8])
    plot_steps_to_target(scaling, critical_batch(scaling, table), "None", [tmp_path / "none.svg"], dpi=40)
    assert "no batch size reached a target" in (tmp_path / "none.svg").read_text()
    record = {"iteration": [0, 1, 10, 100], "b_simple": [9, 10, 20, None], "b_noise": [8, 9, 15, 30]}
    plot_noise_scales([(1, 0.01, [record, record]), (64, 0.01, [record])], "Noise", [tmp_path / "noise.png"], dpi=40)
    assert (tmp_path / "noise.png").read_bytes()[:4] == b"\x89PNG"
    sizes = scaling_table(batch_sizes=(100,), train_sizes=(100, 1000, 10000, 60000))
    plot_train_size_curve(sizes, "Sizes", [tmp_path / "sizes.svg"], dpi=40)
    svg = (tmp_path / "sizes.svg").read_text()
    assert "least-squares optimum" in svg and "rank of the training images" in svg and "batch 100" in svg
