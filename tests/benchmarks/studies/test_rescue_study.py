"""The rescue study end to end on a tiny budget, then its report on crafted numbers.

The ``smoke`` preset (4 steps, 256 generated images, both primary removals, one
secondary removal and one intact arm, two seeds) runs through the command line;
then every record's kNN, the untrained evaluations, the head readings and the
timing are replaced by the crafted numbers of ``rescue_data`` and the report is
written again: every verdict line, every rescue line and every cell of the user's
table must be the one the crafted numbers call for (intervals recomputed here with
scipy's t quantiles at Holm's levels, written out again here).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import eval_steps
from benchmarks.studies.rescue import cli, config, report
from benchmarks.studies.rescue.collapse import Thresholds
from benchmarks.studies.rescue.config import TERM_LABELS, preset
from tests.benchmarks.studies import rescue_data
from tests.benchmarks.studies.mechanism_data import fake_fashion_mnist
from tests.benchmarks.studies.test_rescue_analysis import holm_levels

CONFIG = preset("smoke")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    data = fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))
    log_dir = tmp_path_factory.mktemp("rescue")
    args = [
        "--preset",
        "smoke",
        "--log-dir",
        str(log_dir),
        "--data-dir",
        str(data),
        "--workers",
        "1",
    ]
    assert cli.main(args) == 0
    return {"log": log_dir, "data": data}


def test_every_file_run_and_corpus_snapshot(study: Dict[str, Path]) -> None:
    log = study["log"]
    for name in report.expected_files():
        assert (log / "report" / name).stat().st_size > 0, name
    specs = config.run_specs(CONFIG)
    index = corpus.read_index(log / "corpus")
    assert [r["run_id"] for r in index["runs"]] == [s.run_id for s in specs]
    steps = eval_steps(CONFIG.engine.steps, CONFIG.engine.evaluations)
    for entry, spec in zip(index["runs"], specs, strict=True):
        assert entry.get("term") == spec.term
        arrays = corpus.load_run(log / "corpus" / entry["file"])
        np.testing.assert_array_equal(arrays["step"], steps)
        # kNN at every knn_every steps and at the end; NaN in between.
        knn = arrays["knn_top1"]
        assert math.isnan(knn[1]) and not math.isnan(knn[0]) and not math.isnan(knn[-1])
        record = json.loads((log / "records" / f"{spec.run_id}.json").read_text())
        assert record["code"]["commit"] is not None
        assert record["code"]["versions"]["lightly"]
    for method in CONFIG.methods():
        timing = json.loads((log / "timing" / f"{method}.json").read_text())
        assert timing["configs"][0]["treatment"] == "none"
        assert timing["code"]["commit"] is not None


def test_resume_runs_nothing_and_refuses_a_code_change(
    study: Dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, data = study["log"], study["data"]
    args = [
        "--preset",
        "smoke",
        "--log-dir",
        str(log),
        "--data-dir",
        str(data),
        "--workers",
        "1",
    ]
    assert cli.main(args) == 0
    total = len(config.all_tasks(CONFIG))
    assert f"{total} of {total} tasks already done" in capsys.readouterr().out
    # One finished run as if made at another commit: the engine's resume rule.
    path = sorted((log / "records").glob("*.json"))[0]
    record = json.loads(path.read_text())
    original = json.dumps(record)
    record["code"]["commit"] = "0" * 40
    path.write_text(json.dumps(record))
    assert cli.main(args) == 2
    assert "--allow-code-change" in capsys.readouterr().err
    assert cli.main(args + ["--allow-code-change"]) == 0
    path.write_text(original)


def craft(log: Path) -> None:
    """Replaces every measured number by the crafted ones; keeps the files' form."""
    knn = rescue_data.final_knn(CONFIG)
    records = {r["run_id"]: r for r in rescue_data.records(CONFIG)}
    for path in (log / "records").glob("*.json"):
        record = json.loads(path.read_text())
        crafted = records[record["run_id"]]
        record["final_knn"], record["final_probe"] = (
            knn[record["run_id"]],
            crafted["final_probe"],
        )
        path.write_text(json.dumps(record))
    for seed, values in rescue_data.UNTRAINED.items():
        path = log / "untrained" / f"seed{seed}.json"
        stored = json.loads(path.read_text())
        path.write_text(json.dumps(dict(stored, **values)))
    thresholds = asdict(
        Thresholds(
            CONFIG.embedding_threshold, CONFIG.kl_epsilon, CONFIG.entropy_epsilon
        )
    )
    for run_id, head in rescue_data.heads(CONFIG).items():
        size = (log / "corpus" / f"{run_id}.npz").stat().st_size
        reading = dict(head, key={"size": size, "thresholds": thresholds})
        (log / "head_collapse" / f"{run_id}.json").write_text(json.dumps(reading))
    timing = json.loads((log / "timing" / "byol.json").read_text())
    for i, row in enumerate(timing["configs"]):
        row.update(
            ratio_median=1 + i / 100, ratio_min=1 + i / 200, ratio_max=1 + i / 50
        )
    (log / "timing" / "byol.json").write_text(json.dumps(timing))


def expected_interval(values: List[float], level: float) -> str:
    t = pytest.importorskip("scipy.stats").t
    mean = statistics.fmean(values)
    half = (
        t.ppf((1 + level) / 2, len(values) - 1)
        * statistics.stdev(values)
        / math.sqrt(len(values))
    )
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def expected_comparisons() -> Dict[tuple[str, str, str, str], Dict[str, Any]]:
    """(family, arm, treatment, role) -> verdict, interval string, n, level, from the
    crafted data alone: p-values by scipy, Holm written out again, intervals by
    scipy."""
    scipy_stats = pytest.importorskip("scipy.stats")
    rows: Dict[tuple[str, str, str, str], Dict[str, Any]] = {}
    families: Dict[str, List[tuple[str, str, str, List[float], float, str]]] = {}
    for (arm, treatment), (mean, e, verdict, _) in rescue_data.GAINS.items():
        family = "primary" if arm in config.PRIMARY else f"secondary: {arm}"
        values = list(rescue_data.per_seed(mean, e).values())
        members = families.setdefault(family, [])
        below = config.FAILURE_MODE[arm] == config.BELOW
        line = 0.0 if below else 0.02
        if treatment != "none":
            members.append((arm, treatment, "treatment", values, line, verdict))
            continue
        if arm in config.PRIMARY:
            collapse = rescue_data.COLLAPSE_VERDICTS[arm]
            members.append((arm, treatment, "collapse", values, -0.05, collapse))
        role = "below" if below else "fails"
        members.append((arm, treatment, role, values, line, verdict))
    for treatment, (mean, e, verdict) in rescue_data.COSTS.items():
        values = list(rescue_data.per_seed(mean, e).values())
        families.setdefault("cost", []).append(
            ("byol", treatment, "cost", values, -0.02, verdict)
        )
    for family, members in families.items():
        ps = []
        for *_, values, threshold, _ in members:
            p = scipy_stats.ttest_1samp(values, threshold).pvalue
            ps.append(1.0 if math.isnan(p) else float(p))
        size = {"primary": 14, "cost": 5}.get(family, 6)
        levels = holm_levels(ps + [1.0] * (size - len(ps)))
        for (arm, treatment, role, values, _, verdict), level in zip(
            members, levels, strict=False
        ):
            rows[(family, arm, treatment, role)] = {
                "verdict": verdict, "interval": expected_interval(values, level),
                "n": len(values), "level": level,
            }  # fmt: skip
    return rows


def test_every_verdict_line_against_crafted_numbers(study: Dict[str, Path]) -> None:
    log = study["log"]
    craft(log)
    assert cli.main(["--preset", "smoke", "--log-dir", str(log), "--report"]) == 0
    lines = (log / "report" / "verdicts.txt").read_text().splitlines()
    expected = expected_comparisons()
    comparisons = [
        line for line in lines if not line.startswith(("rescue | ", "Rescue verdicts"))
    ]
    assert len(comparisons) == len(expected) == 14 + 6 + 5
    for line in comparisons:
        family, arm, treatment, reading, verdict, evidence, where = line.split(" | ")
        want = expected[(family, arm, treatment, reading.split(" vs ")[0])]
        assert verdict == want["verdict"], line
        assert evidence.split(" ", 1)[1] == want["interval"], line
        assert (
            f"n = {want['n']}," in where and f"Holm level {want['level']:.4f}" in where
        )
    rescue = {
        tuple(line.split(" | ")[1:3]): line.split(" | ")[3]
        for line in lines
        if line.startswith("rescue | ")
    }
    want_rescue = {k: v[3] for k, v in rescue_data.GAINS.items() if v[3] is not None}
    assert rescue == want_rescue
    assert lines[-1] == (
        "Rescue verdicts: primary: 5 rescues, 3 does not rescue, 2 inconclusive; "
        "secondary: 5 no failure to rescue."
    )


def test_users_table_against_crafted_numbers(study: Dict[str, Path]) -> None:
    log = study["log"]
    craft(log)
    assert cli.main(["--preset", "smoke", "--log-dir", str(log), "--report"]) == 0
    csv = (log / "report" / "users_table.csv").read_text().splitlines()
    import csv as csv_module

    rows = list(csv_module.reader(csv))[1:]
    expected = expected_comparisons()
    labels = {v: k for k, v in TERM_LABELS.items()}
    timing = json.loads((log / "timing" / "byol.json").read_text())
    ratios = {(r["arm"], r["treatment"]): r for r in timing["configs"]}
    assert len(rows) == 3 * 6
    for removal, label, verdict, g, heads, step, cost, cost_verdict in rows:
        treatment = labels[label]
        family = "primary" if removal in config.PRIMARY else f"secondary: {removal}"
        role = "treatment"
        if treatment == "none":
            mode = config.FAILURE_MODE[removal]
            role = "below" if mode == config.BELOW else "fails"
        want = expected[(family, removal, treatment, role)]
        gains = rescue_data.GAINS[(removal, treatment)]
        assert verdict == (want["verdict"] if treatment == "none" else gains[3])
        assert g == want["interval"]
        collapsed = len(rescue_data.COLLAPSED_HEADS.get((removal, treatment), ()))
        assert heads.startswith(f"{collapsed}/2")
        if removal.startswith("byol"):
            r = ratios[(removal, treatment)]
            assert (
                step
                == f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"
            )
        if treatment == "none":
            assert (cost, cost_verdict) == ("-", "-")
        elif removal.startswith("byol"):
            want_cost = expected[("cost", "byol", treatment, "cost")]
            assert (cost, cost_verdict) == (want_cost["interval"], want_cost["verdict"])
