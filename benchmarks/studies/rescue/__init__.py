"""The rescue study (issue 32): which term rescues training when a device is removed?

Pre-registered in ``benchmarks/studies/rescue_preregistration.md``; declared as data
(:mod:`.config`) on the mechanism study's engine (``benchmarks/studies/mechanism``).
Run it with ``python benchmarks/studies/rescue.py --log-dir DIR``. Modules:
:mod:`.config` (removals, treatments, seeds, order), :mod:`.timing` (cost per step,
side by side), :mod:`.collapse` (head collapse from the corpus), :mod:`.analysis`
(families, Holm), :mod:`.verdicts` (the registered wording), :mod:`.report`,
:mod:`.pilot`, :mod:`.power`, :mod:`.cli`. The
pilot's output is kept in ``pilot_2026-12-07/``.
"""
