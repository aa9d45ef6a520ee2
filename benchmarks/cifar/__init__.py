"""The pieces of ``benchmarks/cifar10.py``: methods, data, config, run loop."""
