"""Keeps pytest from importing the example scripts.

The examples are top-level scripts, as lightly's are: importing one downloads its
dataset (the offline ones read scikit-learn's digits) and trains. The project's
pytest options include ``--doctest-modules``, so ``pytest .`` or ``pytest examples``
would import them while collecting. tests/test_examples.py runs them instead: lightly's
layouts on a tiny fake dataset, the offline ones for a few epochs.
"""

collect_ignore_glob = ["pytorch*/*.py", "offline/*.py"]
