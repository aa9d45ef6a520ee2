"""The mechanism study (issue 22): does the entropy term itself prevent collapse?

Pre-registered in ``benchmarks/studies/mechanism_preregistration.md``. Run it with
``python benchmarks/studies/mechanism.py --preset mechanism --log-dir DIR``. Modules
by concern: :mod:`.config` (arms, runs, order), :mod:`.data` (Fashion-MNIST, view
streams), :mod:`.models` (the arms' interventions), :mod:`.evaluation` (kNN,
probe), :mod:`.runner` (one run, resumable), :mod:`.corpus` (the collapse corpus),
:mod:`.schedule` (worker processes, progress), :mod:`.analysis` (hypotheses and
verdicts), :mod:`.plots`, :mod:`.report`, :mod:`.pilot`, :mod:`.cli`.
"""
