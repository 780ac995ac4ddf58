"""Which figures the workflow draws for a planned configuration: each group's (a sweep's or a
comparison's) overlays and analysis figures, each small group's per-run figures, and the text the
report shows for them. Torch-free: planning imports it."""

import re

from .runs import PROBLEM, configurations, parse_run


def rst_text(text):
    """`text` as reStructuredText that reads as written: one line, every markup character escaped,
    so that a title from the config never becomes markup (a directive, a link, raw HTML) in the report.
    """
    return re.sub(r"([^0-9A-Za-z ])", r"\\\1", " ".join(text.split()))


class FigureTargets:
    """The figure files of a plan: `figure_groups` maps each group to (title, runs) (mnist_sgd.study.plan),
    `targets` each data set to its target accuracies; `config` gives the formats and figure options."""

    def __init__(self, config, figure_groups, targets):
        self.formats = config["figures"]["formats"]
        self.run_figure_limit = config["figures"]["run_figures"]
        self.noise = bool(config["noise_points"])
        self.figure_groups, self.targets = figure_groups, targets

    def run_figures(self, runs):
        """Each run's curves, and what its model learned (weights and confusion matrix)."""
        return [
            f"results/figures/runs/{name}.{ext}"
            for run in runs
            for name in (f"{run}", f"{run}/weights", f"{run}/confusion")
            for ext in self.formats
        ]

    def drawn_run_by_run(self, runs):
        """Whether a group of `runs` gets each run's own figures: it has at most figures.run_figures runs.
        A bigger sweep's hundreds of per-run figures are drawn only when asked for, by path."""
        return len(runs) <= self.run_figure_limit

    def scaling_figures(self, runs):
        """The analysis figures a group of `runs` supports (docs/scaling.md): steps to target where, on one
        training problem, it has two batch sizes or more and its data set has targets; the noise scales
        where runs measure them; accuracy against training-set size where one data set has three sizes.
        """
        problems, sizes = {}, {}
        for run in runs:
            params = parse_run(run)
            problems.setdefault(tuple(params[key] for key in PROBLEM), set()).add(params["batch_size"])
            sizes.setdefault(params["dataset"], set()).add(params["train_size"])
        kinds = []
        if any(len(b) > 1 and self.targets[problem[0]] for problem, b in problems.items()):
            kinds.append("steps_to_target")
        if self.noise:
            kinds.append("noise_scale")
        if any(len(s) > 2 for s in sizes.values()):
            kinds.append("train_size")
        return kinds

    def group_figures(self, group):
        """The figures of a sweep or comparison: its overlays (and the learning-rate figure where its runs
        have several), the analysis figures it supports, and, for a small group, each of its runs' own
        figures."""
        runs = self.figure_groups[group][1]
        several = any(len(line) > 1 for line in learning_rate_lines(runs))
        kinds = ["curves", "final_accuracy"] + (["learning_rate"] if several else [])
        kinds += self.scaling_figures(runs)
        overlays = [f"results/figures/{group}/{kind}.{ext}" for kind in kinds for ext in self.formats]
        return overlays + (self.run_figures(runs) if self.drawn_run_by_run(runs) else [])

    def all_figures(self):
        """Every group's figures and the wall-time figure, each once."""
        figures = dict.fromkeys(f for group in self.figure_groups for f in self.group_figures(group))
        return list(figures) + [f"results/figures/wall_time.{ext}" for ext in self.formats]


def learning_rate_lines(runs):
    """The lines of a learning-rate figure of `runs`: [{lr: the runs of that configuration}], one per
    configuration but for its learning rate, in the order of `runs`."""
    lines = {}
    for config, members in configurations(runs).items():
        lr = parse_run(config)["lr"]
        lines.setdefault(config.replace(f"_lr{lr}_", "_lr_", 1), {})[float(lr)] = members
    return list(lines.values())


def learning_rate_labels(runs):
    """The labels of the lines of learning_rate_lines(runs): what varies among them but the learning rate."""
    return run_labels([next(iter(line.values()))[0] for line in learning_rate_lines(runs)], leave_out=("lr", "seed"))


def run_labels(runs, leave_out=()):
    """Short labels for runs (or configurations) compared in one figure: the parameters that vary among
    them, but those in `leave_out` (e.g. the one a figure's axis shows)."""
    params = [parse_run(run) for run in runs]
    keys = ("dataset", "impl", "sampling", "train_size", "batch_size", "lr", "iterations", "seed", "eval_every")
    varying = [k for k in keys if len({p[k] for p in params}) > 1 and k not in leave_out]
    if {"train_size", "batch_size"} <= set(varying) and all(p["batch_size"] == p["train_size"] for p in params):
        varying.remove("batch_size")  # batch = subset size: one number says both
    names = {"train_size": "train", "batch_size": "batch", "iterations": "it", "eval_every": "every"}
    words = [[p[k] if k in ("impl", "dataset") else f"{names.get(k, k)} {p[k]}" for k in varying] for p in params]
    return [", ".join(w) or p["impl"] for w, p in zip(words, params)]
