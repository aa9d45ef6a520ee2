"""``python benchmarks/studies/alarm.py --corpus DIR [--records DIR] --out DIR``.

Replays every run of the frozen plan found in the corpora (more than one
``--corpus`` may be given) and writes ``report.md`` and ``results.json`` to --out.
``python benchmarks/studies/alarm.py generate --log-dir DIR`` makes the new corpus
(:mod:`benchmarks.studies.alarm.generate`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from benchmarks.common.cli import OneLineErrorParser
from benchmarks.studies.alarm import plan
from benchmarks.studies.alarm.replay import RunResult, replay_corpus
from benchmarks.studies.alarm.verdicts import Row, family_rows, quality, shipped
from lightly_er.utils.io import write_atomic

HEADER = (
    "| Candidate | Role | Level | Collapsed | Caught | Sens. lower | Leads (steps) "
    "| Median | No collapse | False alarms | FA upper | Alarms, kNN below "
    "| Alarms, kNN not below | Verdict |\n" + "|---" * 14 + "|\n"
)


def _line(r: Row) -> str:
    median = "-" if r.median_lead is None else f"{r.median_lead:+g}"
    cells = [r.candidate, r.role, f"{r.confidence:g}", r.collapsed, r.detected,
             f"{r.sensitivity_lower:.3f}", ", ".join(f"{x:+d}" for x in r.leads) or "-",
             median, r.healthy, r.false_alarms, f"{r.false_alarm_upper:.3f}", r.below,
             r.not_below, r.verdict]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def report(results: Sequence[RunResult], skipped: Sequence[str]) -> str:
    """The report's Markdown."""
    text = f"# Alarm validation\n\nRuns of the plan: {len(results)}; "
    text += f"in the corpora but not in the plan (not read): {len(skipped)}.\n"
    gone = [r.run_id for r in results if r.diverged]
    text += f"Diverged (listed, not scored): {', '.join(gone) or 'none'}.\n"
    for family in ("embedding", "prototype"):
        rows = family_rows(results, family)
        text += f"\n## {family} heads\n\n{HEADER}" + "".join(map(_line, rows))
        wide = [r for r in results if r.arm.endswith(plan.SHIFT)]
        shift_rows = [row for row in family_rows(wide, family) if row.role == "all"]
        text += "\nShifted setting only (reported, not a verdict):\n\n" + HEADER
        text += "".join(map(_line, shift_rows))
        text += f"\nShipped: {shipped(rows, family)}.\n"
    text += "\n## Quality scores (held-out odd seeds)\n\n"
    for method in plan.FAMILY_OF:
        q = quality(results, method)
        held = q["scores"].get(q["chosen"], {}) if q["chosen"] else {}
        numbers = ", ".join(
            f"{k} {v:.3g}" for k, v in held.items() if not math.isnan(v)
        )
        text += f"- {method}: {q['verdict']} (chosen: {q['chosen']}; {numbers})\n"
    text += "\n## Runs\n\n| Run | Collapsed | First met | Onset | Mode | Alarms |\n"
    text += "|---|---|---|---|---|---|\n"
    for r in results:
        alarms = "; ".join(f"{c} {a['all']}" for c, a in r.alarms.items())
        text += f"| {r.run_id} | {r.collapsed} | {r.first_met} | {r.onset} | "
        text += f"{r.mode or '-'} | {alarms or '-'} |\n"
    return text


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        from benchmarks.studies.alarm import generate

        return generate.main(argv[1:])
    p = OneLineErrorParser(prog="benchmarks/studies/alarm.py", description=__doc__)
    p.add_argument("--corpus", type=Path, action="append", required=True)
    p.add_argument("--records", type=Path, action="append", default=[])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    for directory in args.corpus + args.records:
        if not directory.is_dir():
            p.error(f"{directory} is not a directory")
    results, skipped = replay_corpus(args.corpus, args.records)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "report.md", report(results, skipped))
    document: Any = {
        "runs": [dataclasses.asdict(r) for r in results],
        "skipped": list(skipped),
    }
    write_atomic(args.out / "results.json", json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out / 'report.md'} ({len(results)} runs)")
    return 0
