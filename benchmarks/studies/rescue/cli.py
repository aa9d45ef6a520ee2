"""The rescue study's command line (``python benchmarks/studies/rescue.py``).

--log-dir DIR                the whole study (side-by-side timings, then every run
                             in the registered order), then every table and verdict
                             and the corpus index; run again, it resumes where it
                             stopped (it refuses if the code changed since, unless
                             --allow-code-change)
--report --log-dir DIR       the report of what is finished, nothing run
--status --log-dir DIR       one line: progress and ETA of a running study
--pilot --log-dir DIR        the pilot (seeds 900 and 901), in this process
--projection --log-dir DIR   the projected wall time of --preset from the pilot
                             in DIR (its pilot.json)
--power                      the power table of the pre-registration
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
from benchmarks.studies.rescue import config as study_config

PROG = "benchmarks/studies/rescue.py"


def parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog=PROG,
        description=__doc__,
        hint=" (see --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        choices=("rescue", "secondary", "smoke"),
        default="rescue",
        help="the registered study (rescue), its registered follow-up on the "
        "secondary removals (secondary), or the study on a tiny budget (smoke)",
    )
    p.add_argument("--log-dir", type=Path, help="records, corpus, report")
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
        "--allow-code-change",
        action="store_true",
        help="resume although the code changed since the study's last invocation",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--report", action="store_true", help="only write the report of finished runs"
    )
    what.add_argument(
        "--status", action="store_true", help="print the progress of the study"
    )
    what.add_argument("--pilot", action="store_true", help="run the pilot instead")
    what.add_argument(
        "--power", action="store_true", help="print the registration's power table"
    )
    what.add_argument(
        "--projection",
        action="store_true",
        help="print the projected wall time of --preset from the pilot in --log-dir",
    )
    return p


def check_study_file(log_dir: Path, cfg: study_config.RescueConfig) -> None:
    """The log directory holds one study: its settings are written at the first start.

    Raises:
        UsageError: If it holds a study with other settings.
    """
    from lightly_er.utils.io import write_atomic

    path = log_dir / "study.json"
    settings = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists
    if path.exists():
        if json.loads(path.read_text()) != settings:
            raise UsageError(
                f"{log_dir} holds a study with other settings ({path}); use another "
                "--log-dir"
            )
        return
    write_atomic(path, json.dumps(settings, indent=1) + "\n")


def run_study(args: argparse.Namespace, cfg: study_config.RescueConfig) -> None:
    from benchmarks.common.code import current_code
    from benchmarks.studies.mechanism.runner import remove_stale
    from benchmarks.studies.mechanism.schedule import execute
    from benchmarks.studies.rescue.report import update_index, write_report
    from benchmarks.studies.rescue.timing import run_timing

    # The timing records name the code as the engine's run records do.
    extra = {"code": current_code(ignore=[args.log_dir]).to_dict()}
    remove_stale(args.log_dir)
    print("side-by-side timing of every method ...", flush=True)
    run_timing(
        cfg, args.log_dir, args.data_dir, cfg.primary_seeds[0], args.workers,
        extra=extra,
    )  # fmt: skip
    failed = execute(
        study_config.all_tasks(cfg), cfg.engine, args.log_dir, args.data_dir,
        args.workers, on_run_done=lambda: None if update_index(args.log_dir, cfg) else None,
        allow_code_change=args.allow_code_change,
    )  # fmt: skip
    summary = write_report(args.log_dir, cfg)
    print(f"report: {args.log_dir / 'report' / 'report.md'}")
    print(summary)
    if failed:
        raise ValueError(
            f"{len(failed)} task(s) failed: {', '.join(failed)}; run the same "
            "command again to retry"
        )


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> None:
        if args.power:
            from benchmarks.studies.rescue.power import report

            print(report())
            return
        if args.log_dir is None:
            raise UsageError("--log-dir is required (except with --power)")
        if args.status:
            from benchmarks.studies.mechanism.schedule import status_line

            print(status_line(args.log_dir))
            return
        check_log_dir(args.log_dir)
        cfg = study_config.preset(args.preset)
        if args.projection:
            from benchmarks.studies.rescue.pilot import projection_table

            print(projection_table(cfg, args.log_dir / "pilot.json"))
            return
        if args.pilot:
            from benchmarks.studies.rescue.pilot import run_pilot

            run_pilot(cfg, args.log_dir, args.data_dir)
            print((args.log_dir / "pilot.md").read_text())
            return
        check_study_file(args.log_dir, cfg)
        if args.report:
            from benchmarks.studies.rescue.report import write_report

            print(write_report(args.log_dir, cfg))
            return
        run_study(args, cfg)

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
