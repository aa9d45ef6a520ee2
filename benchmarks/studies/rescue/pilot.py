"""The pilot: per-step cost of every configuration, the controls, the projection.

On seeds outside the study (``pilot_seeds``, 900 and 901), in its own log
directory, in one process with one thread (the machine is shared):

1. the side-by-side timing of every method (:mod:`.timing`) on a short schedule
   (2 warm-up steps, 3 rounds of 5 steps), and one evaluation (kNN, snapshot with
   corpus file and checkpoint, probe) per method;
2. the controls, full runs of the study's engine and budget: DINO at EMA 0 (w = 0,
   seed 900) and BYOL without predictor at EMA 0 (w = 0, seeds 900 and 901): does
   the first fall below its untrained network by c, does the second's head
   collapse;
3. the projected wall time of the preset on the otherwise idle 2-core machine,
   P = 1.1 x (one-thread CPU seconds of every task) / 2, from these CPU times.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from benchmarks.common.tables import markdown_table
from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import ARMS, RunSpec, Task, eval_steps
from benchmarks.studies.mechanism.config import stream_samples as engine_samples
from benchmarks.studies.mechanism.evaluation import features, knn_top1, linear_probe
from benchmarks.studies.mechanism.models import build_model, head_outputs, optimiser
from benchmarks.studies.mechanism.runner import (
    Env,
    make_stream,
    setup_process,
    train_run,
    untrained,
)
from benchmarks.studies.rescue.collapse import Thresholds, cached_reading
from benchmarks.studies.rescue.config import (
    SECONDARY_ALL,
    RescueConfig,
    all_tasks,
    spec_of,
    timing_configs,
)
from benchmarks.studies.rescue.timing import time_method
from lightly_er.utils.io import write_atomic

PACKING = 1.1
STREAMS = 2
CONTROLS: Tuple[Tuple[str, int], ...] = (
    ("dino-ema0", 0),
    ("byol-nopred-ema0", 0),
    ("byol-nopred-ema0", 1),
)
"""(removal, index into ``pilot_seeds``) of the control runs, at w = 0."""


def time_evaluation(
    env: Env, arm: str, weight: Optional[float], seed: int
) -> Dict[str, Any]:
    """CPU seconds of one kNN evaluation, one snapshot (heads, corpus file and
    checkpoint) and one probe, on the arm's model."""
    c, ev = env.config, env.eval
    spec = RunSpec(arm, weight, c.batch, 10_000, seed)
    model = build_model(spec, 10)
    optimizer, scheduler = optimiser(model)
    start = time.process_time()
    bank_f = features(model.backbone, ev.bank)
    test_f = features(model.backbone, ev.test)
    knn_top1(bank_f, ev.bank_labels, test_f, ev.test_labels, c.knn_k, c.knn_t)
    knn_s = time.process_time() - start
    start = time.process_time()
    model.eval()
    outputs = head_outputs(model, ev.held_out)
    model.train()
    corpus.write_snapshot(env.log_dir / "timing", f"{arm}_w{weight}", 0, outputs, {})
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        buffer,
    )
    snapshot_s = time.process_time() - start
    start = time.process_time()
    linear_probe(
        bank_f, ev.bank_labels, test_f, ev.test_labels, c.probe_iterations, c.probe_l2
    )
    probe_s = time.process_time() - start
    return {
        "arm": arm,
        "weight": weight,
        "knn_s": knn_s,
        "snapshot_s": snapshot_s,
        "probe_s": probe_s,
    }


def projection(config: RescueConfig, pilot: Dict[str, Any]) -> Dict[str, Any]:
    """One-thread CPU seconds of every task of ``config`` and P in hours.

    Per run: steps x the configuration's median step time (the timing) + a
    snapshot at every snapshot after step 0, a kNN at those with one (every
    ``knn_every`` steps) + the probe; streams at the measured
    images per CPU second; untrained evaluations (kNN and probe); the timings.
    """
    step = {
        (row["arm"], row["treatment"]): row["ms_median"] / 1000
        for t in pilot["timings"] for row in t["configs"]
    }  # fmt: skip
    evals = {e["method"]: e for e in pilot["evaluations"]}
    rate = {
        t["method"]: t["stream"]["samples"] / t["stream"]["cpu_s"]
        for t in pilot["timings"]
    }
    e = config.engine
    after = eval_steps(e.steps, e.evaluations)[1:]
    knn_at = [
        s for s in after if not e.knn_every or s % e.knn_every == 0 or s == e.steps
    ]
    parts = {"training": 0.0, "evaluation": 0.0, "streams": 0.0, "untrained": 0.0}
    for task in all_tasks(config):
        if task.kind == "stream":
            parts["streams"] += engine_samples(e) / rate[task.method]
        elif task.kind == "untrained":
            any_eval = next(iter(evals.values()))
            parts["untrained"] += any_eval["knn_s"] + any_eval["probe_s"]
        else:
            assert task.spec is not None
            spec = task.spec
            treatment = "entropy" if spec.weight == 1.0 else spec.term or "none"
            parts["training"] += spec.steps * step[(spec.arm, treatment)]
            ev = evals[ARMS[spec.arm].method]
            parts["evaluation"] += (
                len(knn_at) * ev["knn_s"]
                + len(after) * ev["snapshot_s"]
                + ev["probe_s"]
            )
    timing = 0.0
    for method in config.methods():
        per = config.timing_warmup + config.timing_rounds * config.timing_steps
        timing += sum(per * step[c] for c in timing_configs(config, method))
    parts["timing"] = timing
    one_thread = sum(parts.values())
    runs = sum(t.kind == "run" for t in all_tasks(config))
    return {"runs": runs, **{f"{k}_s": v for k, v in parts.items()},
            "one_thread_s": one_thread, "projected_h": PACKING * one_thread / STREAMS / 3600}  # fmt: skip


def _control(env: Env, config: RescueConfig, removal: str, seed: int) -> Dict[str, Any]:
    spec = spec_of(removal, "none", seed, config.engine)
    stream = make_stream(env, ARMS[removal].method, seed)
    base = untrained(env, seed)
    record = train_run(env, spec)
    thresholds = Thresholds(
        config.embedding_threshold, config.kl_epsilon, config.entropy_epsilon
    )
    head = cached_reading(
        env.log_dir, spec.run_id, record["method"], record["loss"], thresholds
    )
    assert head is not None
    gain = record["final_knn"] - base["knn"]
    return {
        "run_id": spec.run_id, "seed": seed, "untrained_knn": base["knn"],
        "final_knn": record["final_knn"], "gain": gain,
        "below_untrained_by_c": gain < -config.engine.collapse_margin,
        "probe_gain": record["final_probe"] - base["probe"],
        "head_collapsed": head["collapsed"], "head_onset": head["onset"], "head_mode": head["mode"],
        "head_values_last": {k: v[-1] for k, v in head["values"].items()},
        "fails_to_learn": gain < config.fail_margin and head["collapsed"],
        "knn_over_steps": record["evals"]["knn_top1"], "steps": record["evals"]["step"],
        "run_cpu_s": record["timing"]["cpu_s"], "run_wall_s": record["timing"]["wall_s"],
        "stream_cpu_s": stream.get("cpu_s", 0.0),
    }  # fmt: skip


def run_pilot(
    config: RescueConfig, log_dir: Path, data_dir: Optional[Path]
) -> Dict[str, Any]:
    """The pilot, in this process; writes ``pilot.json`` and ``pilot.md``."""
    setup_process()
    start, cpu = time.time(), time.process_time()
    # Every candidate configuration, the ones cut to fit included.
    short = dataclasses.replace(
        config, secondary=SECONDARY_ALL, intact=("byol", "dino", "swav", "simsiam"),
        timing_warmup=2, timing_rounds=3, timing_steps=5,
    )  # fmt: skip
    env = Env(config.engine, log_dir, data_dir)
    seed = config.pilot_seeds[0]
    timings = [time_method(env, short, m, seed) for m in short.methods()]
    evaluations = []
    for method in short.methods():
        arm = method  # the intact arm
        result = time_evaluation(env, arm, 0.0, seed)
        evaluations.append(dict(result, method=method))
    controls = [_control(env, config, r, config.pilot_seeds[i]) for r, i in CONTROLS]
    outcome: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "seeds": list(config.pilot_seeds),
        "timings": timings, "evaluations": evaluations, "controls": controls,
    }  # fmt: skip
    outcome["projection"] = projection(config, outcome)
    outcome["cpu_s"] = time.process_time() - cpu
    outcome["wall_s"] = time.time() - start
    write_atomic(log_dir / "pilot.json", json.dumps(outcome, indent=1) + "\n")
    write_atomic(log_dir / "pilot.md", pilot_markdown(outcome))
    return outcome


def pilot_markdown(outcome: Dict[str, Any]) -> str:
    """The pilot's tables: step times and ratios, evaluations, controls, P."""
    steps = [[t["method"], r["arm"], r["treatment"], f"{r['ms_median']:.1f}",
              f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"]
             for t in outcome["timings"] for r in t["configs"]]  # fmt: skip
    evals = [[e["method"], f"{e['knn_s']:.2f}", f"{e['snapshot_s']:.2f}", f"{e['probe_s']:.2f}"]
             for e in outcome["evaluations"]]  # fmt: skip
    streams = [[t["method"], f"{t['stream']['samples'] / t['stream']['cpu_s']:.0f}"]
               for t in outcome["timings"]]  # fmt: skip
    controls = [[c["run_id"], f"{c['untrained_knn']:.4f}", f"{c['final_knn']:.4f}", f"{c['gain']:+.4f}",
                 "yes" if c["below_untrained_by_c"] else "no", f"{c['probe_gain']:+.4f}",
                 f"{'yes' if c['head_collapsed'] else 'no'} (onset {c['head_onset']}{', ' + c['head_mode'] if c['head_mode'] else ''})",
                 ", ".join(f"{k} {v:.3f}" for k, v in c["head_values_last"].items()),
                 f"{c['run_cpu_s']:.0f} / {c['run_wall_s']:.0f}"]
                for c in outcome["controls"]]  # fmt: skip
    p = outcome["projection"]
    proj = [[str(p["runs"])] + [f"{p[k]:.0f}" for k in ("training_s", "evaluation_s", "streams_s", "untrained_s", "timing_s", "one_thread_s")]
            + [f"{p['projected_h']:.2f}"]]  # fmt: skip
    return "\n".join([
        f"# Rescue study pilot (seeds {outcome['seeds']}, {outcome['date']})\n",
        "CPU time of this process (one thread).\n",
        "## Step time, side by side (2 warm-up steps, 3 rounds of 5)\n",
        markdown_table(["Method", "Arm", "Treatment", "CPU ms / step", "× intact (median [range])"], steps, "lllrr"),
        "## One evaluation (CPU s)\n",
        markdown_table(["Method", "kNN", "Snapshot + checkpoint", "Probe"], evals, "lrrr"),
        "## View streams\n", markdown_table(["Method", "Images / CPU s"], streams, "lr"),
        "## Controls (w = 0, full runs)\n",
        markdown_table(["Run", "Untrained kNN", "Final kNN", "G", "G < -c", "Probe gain", "Head collapsed",
                        "Head statistic at the end", "CPU / wall s"], controls),
        "## Projection of the preset, P = 1.1 x one-thread CPU / 2\n",
        markdown_table(["Runs", "Training s", "Evaluation s", "Streams s", "Untrained s", "Timing s",
                        "One thread s", "P h"], proj, "rrrrrrrr"),
        f"Pilot: {outcome['cpu_s']:.0f} CPU s in {outcome['wall_s']:.0f} s of wall time.\n",
    ])  # fmt: skip


def projection_table(config: RescueConfig, pilot_json: Path) -> str:
    """The projection of ``config`` from a pilot's ``pilot.json``, as Markdown.

    Raises:
        FileNotFoundError: If there is no pilot there.
    """
    if not pilot_json.exists():
        raise FileNotFoundError(f"no pilot in {pilot_json.parent} (run --pilot first)")
    p = projection(config, json.loads(pilot_json.read_text()))
    keys = (
        "training_s",
        "evaluation_s",
        "streams_s",
        "untrained_s",
        "timing_s",
        "one_thread_s",
    )
    cells = [
        [config.name, str(p["runs"])]
        + [f"{p[k]:.0f}" for k in keys]
        + [f"{p['projected_h']:.2f}"]
    ]
    columns = ["Preset", "Runs", "Training s", "Evaluation s", "Streams s", "Untrained s",
               "Timing s", "One thread s", "P h"]  # fmt: skip
    return markdown_table(columns, cells, "lrrrrrrrr")


def task_counts(config: RescueConfig) -> Dict[str, int]:
    """Tasks of each kind in the preset."""
    tasks: List[Task] = all_tasks(config)
    return {k: sum(t.kind == k for t in tasks) for k in ("stream", "untrained", "run")}


__all__ = ["run_pilot", "projection", "pilot_markdown", "task_counts", "RunSpec"]
