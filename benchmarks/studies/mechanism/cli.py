"""The study's command line (``python benchmarks/studies/mechanism.py``).

--preset mechanism --log-dir DIR   the whole study, then every table, plot,
                                   verdict and the corpus index; run again, it
                                   resumes where it stopped
--pilot --log-dir DIR              the step-budget pilot (seed 7)
--report --log-dir DIR             the report of what is finished, nothing run
--status --log-dir DIR             one line: progress and ETA of a running study
--corpus-sample OUT --log-dir DIR  the committed sample of DIR's corpus

A study resumes only with the code its runs were made with (same commit, same
uncommitted changes); --allow-code-change resumes anyway, and the report then names
each run's commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from benchmarks.common.cli import (
    OneLineErrorParser,
    UsageError,
    check_log_dir,
    run_command,
)
from benchmarks.studies.mechanism import config as study_config
from benchmarks.studies.mechanism.corpus import corpus_dir, write_sample
from benchmarks.studies.mechanism.report import update_index, write_report
from benchmarks.studies.mechanism.runner import remove_stale
from benchmarks.studies.mechanism.schedule import execute
from lightly_er.utils.io import write_atomic

PROG = "benchmarks/studies/mechanism.py"


def parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog=PROG,
        description=__doc__,
        hint=" (see --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        choices=("mechanism", "smoke"),
        default="mechanism",
        help="the registered study, or the same on a tiny budget",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        required=True,
        help="records, corpus, report (resumable)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Fashion-MNIST's IDX files (default: $LIGHTLY_ER_DATA_DIR/fashion-mnist)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes, one thread each (1: in this process)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="S (default: the preset's, fixed by the pilot)",
    )
    p.add_argument(
        "--allow-code-change",
        action="store_true",
        help="resume runs made with another code commit (or other uncommitted "
        "changes) than this checkout's; the report then names each run's commit "
        "(default: refuse)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--pilot", action="store_true", help="run the step-budget pilot instead"
    )
    what.add_argument(
        "--report",
        action="store_true",
        help="only write the report of the finished runs",
    )
    what.add_argument(
        "--status",
        action="store_true",
        help="print the progress of the study in --log-dir",
    )
    what.add_argument(
        "--corpus-sample",
        type=Path,
        default=None,
        metavar="OUT",
        help="write the committed corpus sample of --log-dir to OUT",
    )
    return p


def _check_study_file(log_dir: Path, cfg: study_config.StudyConfig) -> None:
    """The log directory holds one study: its settings are written at the first start."""
    path = log_dir / "study.json"
    settings = cfg.to_dict()
    settings["seeds"], settings["small_seeds"] = list(cfg.seeds), list(cfg.small_seeds)
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != settings:
            raise UsageError(
                f"{log_dir} holds a study with other settings ({path}); use another --log-dir"
            )
        return
    write_atomic(path, json.dumps(settings, indent=1) + "\n")


def status_line(log_dir: Path) -> str:
    path = log_dir / "status.json"
    if not path.exists():
        raise UsageError(f"no study status in {log_dir}")
    s = json.loads(path.read_text())
    eta = int(s["eta_s"])
    return (
        f"{s['done']}/{s['total']} tasks done, running: {', '.join(s['running']) or '-'}; "
        f"failed: {len(s['failed'])}; ETA {eta // 3600}h{eta % 3600 // 60:02d}m "
        f"(updated {s['updated']}); last: {s['last']}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> None:
        if args.status:
            print(status_line(args.log_dir))
            return
        check_log_dir(args.log_dir)
        if args.corpus_sample is not None:
            runs = write_sample(corpus_dir(args.log_dir), args.corpus_sample)
            print(f"wrote {len(runs)} runs to {args.corpus_sample}")
            return
        if args.pilot:
            from benchmarks.studies.mechanism.pilot import CANDIDATES, run_pilot

            cfg = study_config.preset(args.preset, args.steps or max(CANDIDATES))
            if args.preset == "smoke":
                outcome = run_pilot(
                    cfg,
                    args.log_dir,
                    args.data_dir,
                    args.workers,
                    candidates=(4, 8),
                    limit_h=1.0,
                    allow_code_change=args.allow_code_change,
                )
            else:
                outcome = run_pilot(
                    cfg,
                    args.log_dir,
                    args.data_dir,
                    args.workers,
                    allow_code_change=args.allow_code_change,
                )
            print((args.log_dir / "pilot.md").read_text())
            print(
                f"chosen S = {outcome['chosen_S']}; learning check passed: {outcome['learning_check_passed']}"
            )
            return
        cfg = study_config.preset(args.preset, args.steps)
        _check_study_file(args.log_dir, cfg)
        if args.report:
            print(write_report(args.log_dir, cfg))
            return
        remove_stale(args.log_dir)
        failed = execute(
            study_config.all_tasks(cfg), cfg, args.log_dir, args.data_dir, args.workers,
            on_run_done=lambda: None if update_index(args.log_dir, cfg) else None,
            allow_code_change=args.allow_code_change,
        )  # fmt: skip
        summary = write_report(args.log_dir, cfg)
        print(f"report: {args.log_dir / 'report' / 'report.md'}")
        print(summary)
        if failed:
            raise ValueError(
                f"{len(failed)} task(s) failed: {', '.join(failed)}; run the same command again to retry"
            )

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
