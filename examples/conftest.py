"""Keeps pytest from importing the example scripts.

The examples are top-level scripts, as lightly's are: importing one downloads its
dataset and trains. The project's pytest options include ``--doctest-modules``, so
``pytest .`` or ``pytest examples`` would import them while collecting. They are
tested by tests/test_examples.py, on a tiny fake dataset, instead.
"""

collect_ignore_glob = ["pytorch*/*.py"]
