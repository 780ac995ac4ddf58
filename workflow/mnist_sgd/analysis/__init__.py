"""What the records say together: the summary tables (summary) and the batch-size and data-size
analysis (scaling). Imports mnist_sgd.study only.
"""
