"""``python benchmarks/studies/alarm.py generate --log-dir DIR``: the new corpus.

Runs exactly the new runs of the frozen plan (:data:`plan.NEW_RUNS`, without the
top-up block unless ``--top-up FAMILY`` names a family that the registration's
top-up rule gives it) on the rescue study's engine and run record
(``benchmarks/studies/mechanism``: 1,000 steps at batch 128, snapshots every 50
steps, kNN every 100), every run keeping ``backbone_views`` at its end. Run again,
it resumes where it stopped; it refuses to keep or resume runs made with other code
unless ``--allow-code-change``. ``DIR/corpus/index.json`` is rewritten after every
run. The ``smoke`` preset is the same plan on a tiny budget, one seed per block
(tests).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.common.cli import (
    OneLineErrorParser,
    UsageError,
    check_log_dir,
    run_command,
)
from benchmarks.studies.alarm import plan
from benchmarks.studies.mechanism.config import (
    ARMS,
    RunSpec,
    StudyConfig,
    Task,
    is_wide,
)

PROG = "benchmarks/studies/alarm.py generate"
WIDE = tuple(a + plan.SHIFT for a in plan.COLLAPSE_ARMS)
WIDE_HEALTHY = tuple(a + plan.SHIFT for a in plan.HEALTHY_ARMS)
BLOCKS: Tuple[Tuple[str, Tuple[str, ...], range], ...] = (
    ("collapse arms", plan.COLLAPSE_ARMS, range(200, 210)),
    ("healthy controls", plan.HEALTHY_ARMS, range(200, 205)),
    ("shifted setting, collapse arms", WIDE, range(210, 213)),
    ("shifted setting, intact arms", WIDE_HEALTHY, range(210, 212)),
)
"""The registered blocks of new runs: (name, arms, seeds), all at w = 0."""
TOP_UP_SEEDS = range(220, 230)
"""Seeds of the top-up block (a family's collapse arms, once, by the rule)."""


def engine(preset: str) -> StudyConfig:
    """The rescue study's engine (``alarm``) or its tiny budget (``smoke``).

    Raises:
        ValueError: For an unknown preset.
    """
    if preset == "alarm":
        return StudyConfig("alarm", 1000, evaluations=20, seeds=(), knn_every=100)
    if preset == "smoke":
        return StudyConfig(
            "smoke", 2, batch=8, small_batch=4, large_batch=8, evaluations=2,
            seeds=(), small_seeds=(), train_size=None, test_size=None,
            bank_size=100, held_out=16, probe_iterations=10, knn_every=2,
        )  # fmt: skip
    raise ValueError(f"unknown preset {preset!r}; choose alarm or smoke")


def blocks(
    config: StudyConfig, top_up: Sequence[str] = ()
) -> List[Tuple[str, List[RunSpec]]]:
    """The runs in blocks, seed-major; the top-up block's collapse arms of the
    families in ``top_up``. The smoke preset keeps each block's first seed."""
    named = list(BLOCKS)
    arms = tuple(
        a for a in plan.COLLAPSE_ARMS if plan.FAMILY_OF[ARMS[a].method] in top_up
    )
    if arms:
        named.append(("top-up", arms, TOP_UP_SEEDS))
    out = []
    for name, block_arms, seeds in named:
        kept = seeds if config.name != "smoke" else seeds[:1]
        specs = [RunSpec(a, 0.0, config.batch, config.steps, s)
                 for s in kept for a in block_arms]  # fmt: skip
        out.append((name, specs))
    return out


def all_tasks(config: StudyConfig, top_up: Sequence[str] = ()) -> List[Task]:
    """Every task, in order: each run after the view stream and untrained
    evaluation it needs (each made once, before its first run)."""
    tasks: List[Task] = []
    seen: set[str] = set()
    for _, specs in blocks(config, top_up):
        for spec in specs:
            for task in (
                Task("stream", spec.method, spec.seed),
                Task("untrained", seed=spec.seed, wide=is_wide(spec.arm)),
                Task("run", spec=spec),
            ):
                if task.key not in seen:
                    seen.add(task.key)
                    tasks.append(task)
    return tasks


def update_index(log_dir: Path, config: StudyConfig, tasks: Sequence[Task]) -> None:
    """Rewrites ``DIR/corpus/index.json`` over the finished runs (format version 1)."""
    from benchmarks.studies.mechanism import corpus

    records = []
    for task in tasks:
        path = log_dir / "records" / f"{task.key}.json"
        if task.spec is not None and path.exists():
            records.append(json.loads(path.read_text()))
    first = records[0]["held_out"] if records else {"first": None}
    document = corpus.index_document(
        records,
        held_out={"dataset": "fashion-mnist", "split": "test", "first": first["first"],
                  "size": config.held_out, "view": "eval", "mode": "eval"},
        knn={"k": config.knn_k, "t": config.knn_t, "bank_size": config.bank_size,
             "bank_seed": config.bank_seed, "queries": config.test_size},
    )  # fmt: skip
    corpus.write_index(corpus.corpus_dir(log_dir) / "index.json", document)


def check_study_file(log_dir: Path, config: StudyConfig) -> None:
    """The log directory holds one corpus: its engine is written at the first start.

    Raises:
        UsageError: If it holds one made with other settings.
    """
    from lightly_er.utils.io import write_atomic

    path = log_dir / "study.json"
    settings: Dict[str, Any] = {"study": "alarm", "engine": config.to_dict()}
    settings = json.loads(json.dumps(settings))  # tuples as lists
    if path.exists():
        if json.loads(path.read_text()) != settings:
            raise UsageError(f"{log_dir} holds a corpus with other settings ({path})")
        return
    write_atomic(path, json.dumps(settings, indent=1) + "\n")


def parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog=PROG,
        description=__doc__,
        hint=" (see --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-dir", type=Path, required=True, help="records, corpus")
    p.add_argument("--preset", choices=("alarm", "smoke"), default="alarm")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Fashion-MNIST (default: $LIGHTLY_ER_DATA_DIR/fashion-mnist)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes, one thread each (1: in this process)",
    )
    p.add_argument(
        "--top-up",
        action="append",
        default=[],
        choices=("embedding", "prototype"),
        help="add the top-up block of this family's collapse arms (only "
        "where the registration's top-up rule calls for it)",
    )
    p.add_argument("--allow-code-change", action="store_true",
                   help="keep and resume runs made with other code")  # fmt: skip
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> None:
        from benchmarks.studies.mechanism.runner import remove_stale
        from benchmarks.studies.mechanism.schedule import execute

        check_log_dir(args.log_dir)
        config = engine(args.preset)
        check_study_file(args.log_dir, config)
        tasks = all_tasks(config, args.top_up)
        remove_stale(args.log_dir)
        failed = execute(
            tasks, config, args.log_dir, args.data_dir, args.workers,
            on_run_done=lambda: update_index(args.log_dir, config, tasks),
            allow_code_change=args.allow_code_change, backbone_views=True,
        )  # fmt: skip
        update_index(args.log_dir, config, tasks)
        if failed:
            raise ValueError(
                f"{len(failed)} task(s) failed: {', '.join(failed)}; run the same "
                "command again to retry"
            )

    return run_command(PROG, run)
