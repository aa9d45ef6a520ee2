"""The ER losses with the authors' settings, as lightly gets them.

The public losses of :mod:`lightly_er.loss` are these with the research options of
:class:`lightly_er.experimental.EntropyEstimator` in front.
"""
