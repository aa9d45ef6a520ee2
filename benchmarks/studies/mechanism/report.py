"""Everything the study writes after its runs: index, tables, plots, verdicts.

:func:`write_report` reads the run records and the untrained evaluations of a log
directory (whatever is finished: a study stopped early is reported as far as it
got, with n per comparison) and writes, under ``DIR/report/``: one table per
hypothesis (Markdown and CSV: mean, t-interval at the Holm level, n, verdict), the
arms' table, the plots, ``verdicts.txt`` (one line per verdict and the verdict
line) and ``report.md`` with all of it and the code each run was made with; and
``DIR/corpus/index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from benchmarks.common.code import CodeVersion
from benchmarks.common.tables import csv_table, markdown_table
from benchmarks.studies.mechanism import analysis, corpus, plots
from benchmarks.studies.mechanism.config import StudyConfig, run_specs
from lightly_er.utils.io import write_atomic

HYPOTHESES = ("H-control/H-entropy", "H-cost", "H-replace", "H-unif", "H-batch")
TABLE_FILES = {
    "H-control/H-entropy": "h_control_entropy",
    "H-cost": "h_cost",
    "H-replace": "h_replace",
    "H-unif": "h_unif",
    "H-batch": "h_batch",
}
PLOTS = ("knn_over_steps.png", "knn_batch_axis.png", "diagnostics_over_steps.png")


def load_records(log_dir: Path, config: StudyConfig) -> List[Dict[str, Any]]:
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


def update_index(log_dir: Path, config: StudyConfig) -> Dict[str, Any]:
    """Rewrites ``DIR/corpus/index.json`` from the finished runs."""
    records = load_records(log_dir, config)
    first = (
        records[0]["held_out"] if records else {"first": None, "size": config.held_out}
    )
    document = corpus.index_document(
        records,
        held_out={
            "dataset": "fashion-mnist",
            "split": "test",
            "first": first["first"],
            "size": first["size"],
            "view": "eval",
            "mode": "eval",
        },
        knn={
            "k": config.knn_k,
            "t": config.knn_t,
            "bank_size": config.bank_size,
            "bank_seed": config.bank_seed,
            "queries": config.test_size,
        },
    )
    corpus.write_index(corpus.corpus_dir(log_dir) / "index.json", document)
    return document


def _table(
    columns: Sequence[str], cells: Sequence[Sequence[str]], out: Path, stem: str
) -> str:
    text = markdown_table(columns, cells)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.csv", csv_table(columns, cells))
    return text


def write_report(log_dir: Path, config: StudyConfig) -> str:
    """Writes every table, plot, verdict and the corpus index; returns the verdict line."""
    out = log_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    document = update_index(log_dir, config)
    records = load_records(log_dir, config)
    untrained = load_untrained(log_dir)
    results = analysis.Results(records, {s: u["knn"] for s, u in untrained.items()})
    rows = analysis.hypotheses(results, config)
    total = len(run_specs(config))

    parts = [
        f"# Mechanism study: report ({config.name} preset, S = {config.steps})\n",
        f"{len(records)} of {total} runs finished. Holm families per hypothesis "
        f"(sizes {', '.join(f'{h} {n}' for h, n in analysis.FAMILY_SIZES.items())}; "
        f"{sum(analysis.FAMILY_SIZES.values())} tested comparisons), α = {config.alpha}; "
        "intervals are two-sided t-intervals (n - 1 degrees of freedom) at each "
        "comparison's Holm level. Margins: collapse c = "
        f"{config.collapse_margin}, non-inferiority δ = {config.noninferiority_margin}.\n",
    ]
    if len(records) < total:
        # A partial report must not be read as the registered analysis.
        parts.append(
            "**Interim report**: the study is not finished; the registered analysis "
            "is the one over all runs. The verdicts below use the seeds finished so "
            "far (n per row) at the registered Holm levels.\n"
        )
    untrained_cells = [
        [str(s), f"{u['knn']:.4f}", f"{u['probe']:.4f}"]
        for s, u in sorted(untrained.items())
    ]
    parts += [
        "## Untrained network (per seed)\n",
        _table(["Seed", "kNN top-1", "Probe top-1"], untrained_cells, out, "untrained"),
    ]
    for hypothesis in HYPOTHESES:
        columns, cells = analysis.table_rows(rows, hypothesis)
        size = analysis.FAMILY_SIZES[hypothesis]
        parts += [
            f"## {hypothesis} (Holm family of {size})\n",
            _table(columns, cells, out, TABLE_FILES[hypothesis]),
        ]
    columns, cells = analysis.describe(results)
    parts += [
        "## Every arm (mean ± sd over seeds)\n",
        _table(columns, cells, out, "arms"),
    ]

    plots.plot_knn(
        records, {s: u["knn"] for s, u in untrained.items()}, config, out / PLOTS[0]
    )
    plots.plot_batch_axis(records, config, out / PLOTS[1])
    diag = plots.corpus_diagnostics(
        corpus.corpus_dir(log_dir), document["runs"], out / "diagnostics.json"
    )
    plots.plot_diagnostics(records, diag, config, out / PLOTS[2])
    parts += ["## Plots\n"] + [f"![{name}]({name})\n" for name in PLOTS]

    lines = analysis.verdict_lines(rows)
    summary = analysis.summary_line(rows)
    write_atomic(out / "verdicts.txt", "\n".join(lines + [summary]) + "\n")
    parts += [
        "## Verdicts\n",
        "\n".join(f"- {line}" for line in lines) + "\n",
        summary + "\n",
    ]
    parts += ["## Code\n", code_section(records)]
    parts += [
        "## Corpus\n",
        f"`corpus/index.json`: {len(document['runs'])} runs, format "
        f"{document['format']!r} version {document['version']}.\n",
    ]
    write_atomic(out / "report.md", "\n".join(parts))
    return summary


def code_section(records: Sequence[Mapping[str, Any]]) -> str:
    """Which runs were made with which code (the run records' ``code``)."""
    codes: Dict[str, List[str]] = {}
    for record in records:
        code = record.get("code")
        label = (
            "no commit recorded (made before run records named their code)"
            if code is None
            else CodeVersion.from_dict(code).describe()
        )
        codes.setdefault(label, []).append(str(record.get("run_id", "?")))
    if not codes:
        return "No finished run.\n"
    if len(codes) == 1:
        label, runs = next(iter(codes.items()))
        return f"Every finished run ({len(runs)}): {label}.\n"
    lines = [
        f"- {label} ({len(runs)} runs): {', '.join(runs)}"
        for label, runs in sorted(codes.items())
    ]
    return "The runs were made with different code:\n\n" + "\n".join(lines) + "\n"


def read_rows(log_dir: Path, config: StudyConfig) -> List[analysis.Row]:
    """The hypotheses' rows of a log directory (for callers that print them)."""
    records = load_records(log_dir, config)
    untrained = load_untrained(log_dir)
    return analysis.hypotheses(
        analysis.Results(records, {s: u["knn"] for s, u in untrained.items()}), config
    )


def expected_files() -> List[str]:
    """The files :func:`write_report` writes under ``DIR/report/``."""
    stems = list(TABLE_FILES.values()) + ["untrained", "arms"]
    return (
        [f"{s}.{ext}" for s in stems for ext in ("md", "csv")]
        + list(PLOTS)
        + ["verdicts.txt", "report.md", "diagnostics.json"]
    )


__all__ = ["write_report", "update_index", "load_records", "expected_files", "Mapping"]
