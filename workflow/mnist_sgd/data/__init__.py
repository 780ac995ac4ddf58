"""The data path: IDX files fetched from mirrors and verified (fetch, sources), parsed strictly (idx),
and cached as tensors that every load checks (cache). Imports mnist_sgd.study only.
"""
