"""A resumable sweep of pretraining runs: methods x batch sizes x EMA x seeds.

A finished run writes ``runs/<run id>.json``; a restarted sweep skips every run that
has one (made with the same result settings), and resumes an unfinished run from its
``last.ckpt``. Tables and plots are rewritten from all records at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from benchmarks.cifar.config import (
    RunSpec,
    SweepConfig,
    expand_runs,
    resolve_precision,
)
from benchmarks.cifar.data import load_dataset
from benchmarks.cifar.plots import plot_curves, plot_sweep
from benchmarks.cifar.pool import run_in_processes
from benchmarks.cifar.run import run_one, summary_line
from benchmarks.cifar.tables import write_tables
from benchmarks.common.records import RunResult, load_results
from lightly_er.utils import global_rank


def run_specs(specs: Sequence[RunSpec], config: SweepConfig) -> None:
    """Runs every spec that has no finished record in ``config.log_dir``.

    With ``config.jobs`` > 1 the unfinished runs are trained ``jobs`` at a time, each
    in its own process; every run writes its record when it finishes. A finished
    record made with other result settings is refused (ValueError).
    """
    runs_dir = config.log_dir / "runs"
    todo: List[Tuple[int, RunSpec, Path]] = []
    for index, spec in enumerate(specs, start=1):
        path = runs_dir / f"{spec.run_id(config.epochs)}.json"
        if path.is_file():
            try:
                done: Optional[RunResult] = RunResult.load(path)
            except ValueError:
                done = None  # a damaged record, or an older format: run it again
            if done is not None:
                check_same_settings(done, config, path)
                print(summary_line(done, index, len(specs)) + "  (done before, kept)")
                continue
        todo.append((index, spec, path))
    if not todo:
        return
    if config.jobs > 1 and len(todo) > 1:
        run_in_processes(todo, len(specs), config)
        return
    data = load_dataset(config.dataset, config.data_dir)
    for index, spec, path in todo:
        result = run_one(spec, config, data)
        if global_rank() != 0:
            continue  # under DDP, rank 0 alone writes records, tables and plots
        result.save(path)
        print(summary_line(result, index, len(specs)), flush=True)


def run_sweep(config: SweepConfig) -> List[RunResult]:
    """Runs every unfinished run of the sweep, then writes tables and plots.

    Returns all results of the log directory's ``runs/`` (earlier ones included);
    under DDP, processes other than rank 0 return an empty list.
    """
    config.validate()
    run_specs(expand_runs(config), config)
    if global_rank() != 0:
        return []
    results = [r for r in load_results(config.log_dir) if r.dataset == config.dataset]
    if results:
        table = write_tables(config.log_dir, results)
        plot_curves(results, config.log_dir / "curves.png")
        plot_sweep(results, "batch_size", config.log_dir / "top1_vs_batch_size.png")
        plot_sweep(results, "ema", config.log_dir / "top1_vs_ema.png")
        print()
        print(table)
    return results


# Settings that change a run's result but not its run id: a record made with other
# values must not stand in for this sweep's run.
RESULT_SETTINGS: Tuple[str, ...] = (
    "dataset",
    "backbone",
    "image_size",
    "train_subset",
    "test_subset",
    "knn_k",
    "knn_t",
    "entropy_weight",
    "estimator",
    "precision",
)


def check_same_settings(done: RunResult, config: SweepConfig, path: Path) -> None:
    """Raises ValueError if a finished record was made with other result settings."""
    for key in RESULT_SETTINGS:
        old = done.settings.get(key)
        if key == "image_size":
            if config.image_size is None or old == config.image_size:
                continue
            new: Any = config.image_size
        elif key == "precision":
            new = resolve_precision(config.precision, config.accelerator)
        else:
            new = getattr(config, key)
        if old != new:
            raise ValueError(
                f"{path} was run with {key}={old!r} but this sweep has {key}={new!r}; "
                "give another --log-dir, or the same settings to resume"
            )
    if config.kappa is not None and done.objective == "er" and done.kappa is not None:
        if done.kappa != config.kappa:
            raise ValueError(
                f"{path} was run with kappa={done.kappa!r} but this sweep has "
                f"kappa={config.kappa!r}; give another --log-dir"
            )
