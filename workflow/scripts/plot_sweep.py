"""Rule plot_sweep: overlaid curves and final test accuracy of every run in a sweep."""

import json
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mnist_sgd.plots import plot_final_accuracy, plot_overlay, read_metrics  # noqa: E402

params = snakemake.params
metrics = [read_metrics(path) for path in snakemake.input.metrics]
accuracies = [json.loads(Path(path).read_text())["final_test_accuracy"] for path in snakemake.input.infos]
plot_overlay(list(zip(params.labels, metrics)), params.title, snakemake.output.curves, params.dpi)
plot_final_accuracy(params.labels, accuracies, params.title, snakemake.output.final_accuracy, params.dpi)
