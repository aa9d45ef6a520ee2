"""The benchmarks and studies of lightly-er, run from a checkout (not installed).

``common`` is the core both benchmarks share, ``cifar`` the pieces of
``cifar10.py``, ``imagenet`` lightly's ImageNet benchmarks, ``studies`` the
pre-registered studies and one-off measurements.
"""
