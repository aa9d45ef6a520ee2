"""The mechanism study's engine (issue 22), on which the rescue study runs.

Pre-registered in ``benchmarks/studies/mechanism_preregistration.md``; its report is
in ``benchmarks/studies/results/mechanism_2026-12-02/``. The study's own command,
analysis and report were archived (``benchmarks/studies/ARCHIVE.md``). Modules by
concern: :mod:`.config` (arms, runs, order), :mod:`.data` (Fashion-MNIST, view
streams), :mod:`.models` (the arms' interventions), :mod:`.terms` (the added
regularizers), :mod:`.evaluation` (kNN, probe), :mod:`.runner` (one run,
resumable), :mod:`.corpus` (the collapse corpus), :mod:`.schedule` (worker
processes, progress).
"""
