"""Reusable pieces of the lightly-er benchmarks: methods, datasets, results, plots."""
