"""Framework-free core of cart-pipeline: plain torch/numpy/pandas functions.

Nothing in here imports Kedro, so tests, benchmarks and the search CLI call it directly.
"""
