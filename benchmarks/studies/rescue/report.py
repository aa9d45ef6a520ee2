"""Everything the rescue study writes after its runs: tables, verdicts, the index.

:func:`write_report` reads whatever is finished in a log directory (records,
untrained evaluations, the corpus's head readings, the side-by-side timings, the
code log) and writes under ``DIR/report/``: the user's table, one table per family
(Markdown and CSV), the rescue verdicts, the cost tables, every arm, which runs
used which commit, ``verdicts.txt`` and ``report.md``; and ``DIR/corpus/index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from benchmarks.common.tables import csv_table, markdown_table
from benchmarks.studies.mechanism import corpus
from benchmarks.studies.rescue import analysis
from benchmarks.studies.rescue.analysis import (
    CONTROL_OF,
    COST,
    TREATMENT,
    Comparison,
    Results,
)
from benchmarks.studies.rescue.collapse import Thresholds, cached_reading
from benchmarks.studies.rescue.config import (
    FAILURE_MODE,
    INTACT_OF,
    TERM_LABELS,
    TREATMENTS,
    RescueConfig,
    run_specs,
)
from benchmarks.studies.rescue.timing import timing_path
from lightly_er.utils.io import write_atomic

TABLES = (
    "users_table",
    "primary",
    "secondary",
    "rescue",
    "cost_accuracy",
    "cost_step",
    "arms",
    "untrained",
    "code",
)
"""The tables written as ``<name>.md`` and ``<name>.csv``."""


def load_records(log_dir: Path, config: RescueConfig) -> List[Dict[str, Any]]:
    """The finished runs' records, in the study's run order."""
    records = []
    for spec in run_specs(config):
        path = log_dir / "records" / f"{spec.run_id}.json"
        if path.exists():
            records.append(json.loads(path.read_text()))
    return records


def load_untrained(log_dir: Path) -> Dict[int, Dict[str, Any]]:
    out = {}
    for path in sorted((log_dir / "untrained").glob("seed*.json")):
        result = json.loads(path.read_text())
        out[int(result["seed"])] = result
    return out


def load_timings(log_dir: Path, config: RescueConfig) -> Dict[str, Dict[str, Any]]:
    out = {}
    for method in config.methods():
        path = timing_path(log_dir, method)
        if path.exists():
            out[method] = json.loads(path.read_text())
    return out


def update_index(log_dir: Path, config: RescueConfig) -> Dict[str, Any]:
    """Rewrites ``DIR/corpus/index.json`` (collapse corpus format version 1)."""
    records = load_records(log_dir, config)
    e = config.engine
    first = records[0]["held_out"] if records else {"first": None, "size": e.held_out}
    document = corpus.index_document(
        records,
        held_out={"dataset": "fashion-mnist", "split": "test", "first": first["first"],
                  "size": first["size"], "view": "eval", "mode": "eval"},
        knn={"k": e.knn_k, "t": e.knn_t, "bank_size": e.bank_size,
             "bank_seed": e.bank_seed, "queries": e.test_size},
    )  # fmt: skip
    corpus.write_index(corpus.corpus_dir(log_dir) / "index.json", document)
    return document


def step_ratio(timings: Mapping[str, Any], arm: str, treatment: str) -> str:
    """The median ratio (and range) of (arm, treatment)'s step time to the intact's."""
    from benchmarks.studies.mechanism.config import ARMS

    timing = timings.get(ARMS[arm].method)
    if timing is None:
        return "-"
    for row in timing["configs"]:
        if (row["arm"], row["treatment"]) == (arm, treatment):
            return (
                f"{row['ratio_median']:.2f} [{row['ratio_min']:.2f}, "
                f"{row['ratio_max']:.2f}]"
            )
    return "-"


def _interval(x: Optional[Comparison]) -> str:
    return "-" if x is None or x.interval is None else str(x.interval)


def users_table(
    comparisons: Sequence[Comparison], timings: Mapping[str, Any], config: RescueConfig
) -> List[List[str]]:
    """Per removal and treatment: rescue verdict, G, heads, cost per step, cost in
    accuracy on the intact method. The row of "nothing" gives the control of the
    removal's failure mode (its verdict, and its G at that control's level)."""
    rescue = {
        (r.removal, r.treatment): r.verdict for r in analysis.rescues(comparisons)
    }
    by_key = {(x.role, x.arm, x.treatment): x for x in comparisons}
    rows = []
    for removal in config.removals:
        intact = INTACT_OF[removal]
        control_role = CONTROL_OF[FAILURE_MODE[removal]]
        for treatment in TREATMENTS:
            control = treatment == "none"
            x = by_key.get((control_role if control else TREATMENT, removal, treatment))
            cost = by_key.get((COST, intact, treatment))
            verdict = (
                (x.verdict if x else "-")
                if control
                else rescue.get((removal, treatment), "-")
            )
            rows.append([
                removal, TERM_LABELS[treatment], verdict,
                _interval(x), (x.beside.get("head collapsed", "-") if x else "-"),
                step_ratio(timings, removal, treatment),
                "-" if control else _interval(cost),
                "-" if control or cost is None else cost.verdict,
            ])  # fmt: skip
    return rows


USERS_COLUMNS = [
    "Removal",
    "Put in its place",
    "Rescue verdict (row of nothing: the control's verdict)",
    "G [Holm interval]",
    "Head collapsed (k/n, 95% CP)",
    "Step time × intact (median [range])",
    "Cost in kNN when intact: d [Holm interval]",
    "Cost verdict (δ = 2 points)",
]


def comparison_rows(comparisons: Sequence[Comparison]) -> List[List[str]]:
    return [
        [x.family, x.arm, TERM_LABELS[x.treatment], x.role, str(x.n), f"{x.level:.4f}",
         f"{x.p:.2g}", f"{x.threshold:+g}", _interval(x), x.verdict,
         x.beside.get("probe gain", "-"), x.beside.get("head collapsed", "-")]
        for x in comparisons
    ]  # fmt: skip


COMPARISON_COLUMNS = [
    "Family", "Arm", "Treatment", "Reading", "n", "Holm level", "p", "Threshold",
    "Mean [interval]", "Verdict", "Probe gain [same level] (beside)",
    "Head collapsed (k/n, 95% CP)",
]  # fmt: skip


def arm_rows(results: Results) -> List[List[str]]:
    """Every (arm, treatment): kNN, G, probe gain (mean ± sd), heads, labels."""
    rows = []
    for (arm, treatment), runs in results.records.items():
        key = (arm, treatment)
        k, n = results.head_counts(key)
        fails = sum(
            1
            for s, r in runs.items()
            if s in results.gain(key)
            and results.gain(key)[s] < 0.02
            and bool((results.heads.get(r["run_id"]) or {}).get("collapsed"))
        )
        rows.append([arm, TERM_LABELS[treatment], str(len(runs)),
                     analysis.mean_sd(results.knn(key)), analysis.mean_sd(results.gain(key)),
                     analysis.mean_sd(results.gain(key, "probe")), f"{k}/{n}", f"{fails}/{len(runs)}"])  # fmt: skip
    return rows


def code_rows(records: Sequence[Mapping[str, Any]], log_dir: Path) -> List[List[str]]:
    """Which commit (and dirty flag) finished how many runs."""
    counts: Dict[str, int] = {}
    for r in records:
        code = r.get("code") or {}
        name = f"{code.get('commit')} (dirty: {code.get('dirty')})"
        counts[name] = counts.get(name, 0) + 1
    return [[name, str(n)] for name, n in counts.items()]


def _table(
    columns: Sequence[str], cells: Sequence[Sequence[str]], out: Path, stem: str
) -> str:
    text = markdown_table(columns, cells)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.csv", csv_table(columns, cells))
    return text


def write_report(log_dir: Path, config: RescueConfig) -> str:
    """Writes every table, verdict and the corpus index; returns the summary line."""
    out = log_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    document = update_index(log_dir, config)
    records = load_records(log_dir, config)
    untrained = load_untrained(log_dir)
    thresholds = Thresholds(
        config.embedding_threshold, config.kl_epsilon, config.entropy_epsilon
    )
    heads = {}
    for r in records:
        reading = cached_reading(
            log_dir, r["run_id"], r["method"], r["loss"], thresholds
        )
        if reading is not None:
            heads[r["run_id"]] = reading
    results = Results(records, untrained, heads)
    total = len(run_specs(config))
    comparisons = analysis.analyse(results, config, complete=len(records) >= total)
    timings = load_timings(log_dir, config)
    sizes = analysis.family_sizes(config)
    e = config.engine
    parts = [
        f"# Rescue study: report ({config.name} preset, {e.steps} steps)\n",
        f"{len(records)} of {total} runs finished. Holm families: "
        + ", ".join(f"{f} {n}" for f, n in sizes.items())
        + f" (α = {e.alpha} each); two-sided t-intervals, n - 1 df, at each "
        f"comparison's Holm level. c = {e.collapse_margin}, fails-to-learn line "
        f"+{config.fail_margin}, cost margin δ = {e.noninferiority_margin}.\n",
    ]
    diverged = sorted(
        f"{r['run_id']} (step {r['diverged_step']})"
        for r in records
        if r.get("diverged_step") is not None
    )
    parts.append(
        f"Diverged runs (NaN or Inf; scored at chance, head counted collapsed): "
        f"{len(diverged)}" + (": " + ", ".join(diverged) if diverged else "") + ".\n"
    )
    if len(records) < total:
        parts.append("**Interim report**: not every run has finished. The intervals "
                     "are descriptive; no verdict is read before the registered "
                     "analysis over all runs.\n")  # fmt: skip
    primary = [x for x in comparisons if x.family == "primary"]
    secondary = [x for x in comparisons if x.family.startswith("secondary")]
    costs = [x for x in comparisons if x.role == COST]
    step_cells = [
        [t["method"], row["arm"], TERM_LABELS[row["treatment"]], f"{row['ms_median']:.1f}",
         f"{row['ratio_median']:.2f} [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]"]
        for t in timings.values() for row in t["configs"]
    ]  # fmt: skip
    rescue_cells = [[r.removal, TERM_LABELS[r.treatment], r.verdict, r.control, r.treated]
                    for r in analysis.rescues(comparisons)]  # fmt: skip
    sections = [
        ("The user's table", USERS_COLUMNS, users_table(comparisons, timings, config), "users_table"),
        ("Primary removals (one Holm family)", COMPARISON_COLUMNS, comparison_rows(primary), "primary"),
        ("Secondary removals (a Holm family each)", COMPARISON_COLUMNS, comparison_rows(secondary), "secondary"),
        ("Rescue verdicts", ["Removal", "Treatment", "Rescue", "Control verdict", "Treatment verdict"], rescue_cells, "rescue"),
        ("Cost in accuracy on the intact method (one Holm family)", COMPARISON_COLUMNS, comparison_rows(costs), "cost_accuracy"),
        ("Cost per step, side by side in one process (CPU)", ["Method", "Arm", "Treatment", "ms / step (median)", "× intact (median [range])"], step_cells, "cost_step"),
        ("Every arm (mean ± sd over seeds)", ["Arm", "Treatment", "n", "kNN final", "G", "Probe gain", "Head collapsed", "Fails to learn"], arm_rows(results), "arms"),
        ("Untrained network", ["Seed", "kNN top-1", "Probe top-1"], [[str(s), f"{u['knn']:.4f}", f"{u['probe']:.4f}"] for s, u in sorted(untrained.items())], "untrained"),
        ("Code: runs per commit", ["Commit (dirty)", "Runs"], code_rows(records, log_dir), "code"),
    ]  # fmt: skip
    for title, columns, cells, stem in sections:
        parts += [f"## {title}\n", _table(columns, cells, out, stem)]
    lines = analysis.verdict_lines(comparisons, config)
    summary = analysis.summary_line(comparisons)
    write_atomic(out / "verdicts.txt", "\n".join(lines + [summary]) + "\n")
    parts += [
        "## Verdicts\n",
        "\n".join(f"- {line}" for line in lines) + "\n",
        summary + "\n",
    ]
    parts += ["## Corpus\n", f"`corpus/index.json`: {len(document['runs'])} runs, format "
              f"{document['format']!r} version {document['version']}.\n"]  # fmt: skip
    write_atomic(out / "report.md", "\n".join(parts))
    return summary


def expected_files() -> List[str]:
    """The files :func:`write_report` writes under ``DIR/report/``."""
    return [f"{s}.{ext}" for s in TABLES for ext in ("md", "csv")] + [
        "verdicts.txt",
        "report.md",
    ]
