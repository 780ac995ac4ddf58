"""Figures whose size grows with the number of runs stay bounded in pixels and memory, whatever the dpi."""

import subprocess
import sys

from conftest import REPO
from mnist_sgd.plots import MAX_FIGURE_PIXELS


def test_a_figure_of_many_runs_at_a_high_dpi_is_drawn_within_the_pixel_bound_and_says_so(tmp_path):
    """140 runs' wall times at dpi 1200 took 5.66 GB; drawn within MAX_FIGURE_PIXELS they take a fraction."""
    script = f"""
import sys
sys.path.insert(0, {str(REPO / "workflow")!r})
import pandas as pd
from mnist_sgd.plots import plot_wall_time
summary = pd.DataFrame({{
    "run": [f"scratch/trainall_batch{{b}}_lr0.001_it1000_seed{{s}}" for b in range(14) for s in range(10)],
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
