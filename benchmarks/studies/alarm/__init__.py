"""The head-collapse alarm's validation, replayed on the collapse corpus.

Frozen by ``benchmarks/studies/alarm_preregistration.md``: :mod:`.plan` (the
candidates, heads, criteria and runs), :mod:`.replay` (one run), :mod:`.verdicts`
(the criteria), :mod:`.cli` (the command).
"""
