"""MNIST minibatch-SGD study: data, training, summaries and figures for the Snakemake workflow."""

__version__ = "0.3.0"
