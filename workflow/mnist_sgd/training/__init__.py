"""Training: the SGD math (sgd), how a chunk of steps runs (steps), the gradient noise scales (noise),
the exact least-squares optimum (optimum), a plain reference of the original study's formulas
(reference), and the training program that writes a run's records (train).
"""
