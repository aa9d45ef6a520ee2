"""The step-budget pilot: timings, the rule that fixes S, the learning check.

As registered: on seed 7 (not a study seed), in its own log directory, it times
30 training steps (after 5 warm-up steps) of every distinct arm configuration
(arm x w x batch), the view-stream generation of every method and one evaluation
(kNN, snapshot with checkpoint, probe), on two single-thread worker processes.
Times are the worker processes' CPU time (``time.process_time``), so the
projection P(S) = 1.1 x [sum over the study's runs of steps x step time +
evaluations x evaluation time, + view streams + untrained evaluations] / 2 is the
wall time on the otherwise idle 2-core machine, whatever else ran beside the
pilot. S is the largest of 500, 750, 1,000, 1,250 with P(S) <= 3.5 h. The learning
check then trains BYOL (w = 0) and SimCLR for S steps on seed 7.
"""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks.common.tables import markdown_table
from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import (
    METHODS,
    RunSpec,
    StudyConfig,
    Task,
    eval_steps,
    plan,
    run_specs,
    stream_samples,
)
from benchmarks.studies.mechanism.data import (
    batch_views,
    generate_stream,
    grey_pipelines,
    open_stream,
)
from benchmarks.studies.mechanism.evaluation import features, knn_top1, linear_probe
from benchmarks.studies.mechanism.models import (
    build_model,
    head_outputs,
    optimiser,
    training_loss,
)
from benchmarks.studies.mechanism.report import update_index
from benchmarks.studies.mechanism.runner import Env, record_path, setup_process
from benchmarks.studies.mechanism.schedule import execute
from lightly_er.utils.io import write_atomic

CANDIDATES: Tuple[int, ...] = (500, 750, 1000, 1250)
LIMIT_H = 3.5
PACKING = 1.1
STREAMS = 2
WARMUP = 5
TIMED = 30
LEARNING_MARGIN = 0.02


def configurations(config: StudyConfig) -> List[Tuple[str, Optional[float], int]]:
    """Every distinct (arm, w, batch) of the study."""
    seen: List[Tuple[str, Optional[float], int]] = []
    for spec in run_specs(config):
        key = (spec.arm, spec.weight, spec.batch)
        if key not in seen:
            seen.append(key)
    return seen


def _timing_stream(env: Env, method: str, seed: int, samples: int) -> Path:
    return env.log_dir / "timing_streams" / f"{method}_seed{seed}_{samples}.npy"


def time_stream(env: Env, method: str, seed: int, samples: int) -> Dict[str, Any]:
    path = _timing_stream(env, method, seed, samples)
    cpu = time.process_time()
    generate_stream(path, method, seed, env.data.train, samples, env.config.batch)
    seconds = time.process_time() - cpu
    return {
        "method": method,
        "samples": samples,
        "cpu_s": seconds,
        "images_per_s": samples / seconds,
    }


def time_steps(
    env: Env,
    arm: str,
    weight: Optional[float],
    batch: int,
    seed: int,
    samples: int,
    method: str,
) -> Dict[str, Any]:
    """CPU seconds per step: TIMED steps after WARMUP, from the timing stream."""
    stream = open_stream(
        _timing_stream(env, method, seed, samples), (WARMUP + TIMED) * batch
    )
    _, normalize = grey_pipelines(method, env.data.train.shape[1])
    spec = RunSpec(arm, weight, batch, 10_000, seed)
    model = build_model(spec, 10)
    optimizer, scheduler = optimiser(model)
    model.train()
    cpu = 0.0
    for step in range(WARMUP + TIMED):
        start = time.process_time()
        views = batch_views(stream, step, batch, normalize)
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(model, views, step)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        float(loss.detach())
        if step >= WARMUP:
            cpu += time.process_time() - start
    return {"arm": arm, "weight": weight, "batch": batch, "cpu_s_per_step": cpu / TIMED}


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


_ENV: Optional[Env] = None


def _init(config: StudyConfig, log_dir: Path, data_dir: Optional[Path]) -> None:
    global _ENV
    setup_process()
    _ENV = Env(config, log_dir, data_dir)


def _call(job: Tuple[str, Tuple[Any, ...]]) -> Dict[str, Any]:
    assert _ENV is not None
    name, args = job
    if name == "stream":
        return time_stream(_ENV, *args)
    if name == "steps":
        return time_steps(_ENV, *args)
    return time_evaluation(_ENV, *args)


def _map(
    jobs: Sequence[Tuple[str, Tuple[Any, ...]]],
    config: StudyConfig,
    log_dir: Path,
    data_dir: Optional[Path],
    workers: int,
) -> List[Dict[str, Any]]:
    if workers <= 1:
        _init(config, log_dir, data_dir)
        return [_call(job) for job in jobs]
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(config, log_dir, data_dir),
    ) as pool:
        return list(pool.map(_call, jobs))


def projection(timings: Dict[str, Any], config: StudyConfig) -> Dict[str, Any]:
    """P(S) for the study at ``config.steps``: one-thread seconds per part and hours."""
    steps = {
        (t["arm"], t["weight"], t["batch"]): t["cpu_s_per_step"]
        for t in timings["steps"]
    }
    evals = {(t["arm"], t["weight"]): t for t in timings["evaluations"]}
    rate = {t["method"]: t["images_per_s"] for t in timings["streams"]}
    training = evaluation = 0.0
    for spec in run_specs(config):
        training += spec.steps * steps[(spec.arm, spec.weight, spec.batch)]
        e = evals[(spec.arm, spec.weight)]
        n = len(eval_steps(spec.steps, config.evaluations)) - 1
        evaluation += (
            n * (e["knn_s"] + e["snapshot_s"]) + e["snapshot_s"] + e["probe_s"]
        )
    tasks = [t for _, block in plan(config) for t in block]
    stream_s = sum(
        stream_samples(config) / rate[t.method] for t in tasks if t.kind == "stream"
    )
    any_eval = next(iter(evals.values()))
    untrained_s = sum(
        any_eval["knn_s"] + any_eval["probe_s"] for t in tasks if t.kind == "untrained"
    )
    one_thread = training + evaluation + stream_s + untrained_s
    return {
        "S": config.steps,
        "training_s": training,
        "evaluation_s": evaluation,
        "streams_s": stream_s,
        "untrained_s": untrained_s,
        "one_thread_s": one_thread,
        "projected_h": PACKING * one_thread / STREAMS / 3600,
    }


def choose(projections: Sequence[Dict[str, Any]], limit_h: float = LIMIT_H) -> int:
    """The largest candidate S whose projection fits; the smallest if none does."""
    fitting = [p["S"] for p in projections if p["projected_h"] <= limit_h]
    return int(max(fitting) if fitting else min(p["S"] for p in projections))


def run_pilot(
    config: StudyConfig,
    log_dir: Path,
    data_dir: Optional[Path],
    workers: int = 2,
    candidates: Sequence[int] = CANDIDATES,
    limit_h: float = LIMIT_H,
    allow_code_change: bool = False,
) -> Dict[str, Any]:
    """Timings, the rule, the learning check; writes ``pilot.json`` and ``pilot.md``.

    ``allow_code_change``: resume the learning check's runs across a change of code
    (:func:`benchmarks.studies.mechanism.schedule.check_code`).
    """
    seed = config.pilot_seed
    pilot_config = dataclasses.replace(config, seeds=(seed,), small_seeds=(seed,))
    samples = (WARMUP + TIMED) * config.large_batch
    start = time.time()
    stream_jobs = [("stream", (m, seed, samples)) for m in METHODS]
    streams = _map(stream_jobs, pilot_config, log_dir, data_dir, workers)
    method_of = {a: s.method for s in run_specs(config) for a in [s.arm]}
    step_jobs = [
        ("steps", (arm, w, b, seed, samples, method_of[arm]))
        for arm, w, b in configurations(config)
    ]
    eval_jobs = [
        ("eval", (arm, w, seed))
        for arm, w in dict.fromkeys((a, w) for a, w, _ in configurations(config))
    ]
    timed = _map(step_jobs + eval_jobs, pilot_config, log_dir, data_dir, workers)
    timings = {
        "streams": streams,
        "steps": timed[: len(step_jobs)],
        "evaluations": timed[len(step_jobs) :],
    }
    projections = [
        projection(timings, dataclasses.replace(config, steps=s)) for s in candidates
    ]
    chosen = choose(projections, limit_h)

    # Learning check at the chosen S: BYOL (w = 0) and SimCLR, seed 7.
    check_config = dataclasses.replace(pilot_config, steps=chosen)
    specs = [
        RunSpec("byol", 0.0, config.batch, chosen, seed),
        RunSpec("simclr", None, config.batch, chosen, seed),
    ]
    tasks = [
        Task("stream", "byol", seed),
        Task("stream", "simclr", seed),
        Task("untrained", seed=seed),
    ] + [Task("run", spec=s) for s in specs]
    execute(
        tasks,
        check_config,
        log_dir,
        data_dir,
        workers,
        allow_code_change=allow_code_change,
    )
    update_index(log_dir, check_config)
    untrained = json.loads((log_dir / "untrained" / f"seed{seed}.json").read_text())
    learning = []
    for spec in specs:
        record = json.loads(record_path(log_dir, spec.run_id).read_text())
        gain = record["final_knn"] - untrained["knn"]
        learning.append({
            "run_id": spec.run_id, "final_knn": record["final_knn"], "untrained_knn": untrained["knn"],
            "gain": gain, "passes": gain >= LEARNING_MARGIN, "cpu_s": record["timing"]["cpu_s"],
            "wall_s": record["timing"]["wall_s"],
        })  # fmt: skip
    outcome = {
        "seed": seed,
        "date": time.strftime("%Y-%m-%d"),
        "timings": timings,
        "projections": projections,
        "limit_h": limit_h,
        "chosen_S": chosen,
        "learning_check": learning,
        "learning_check_passed": all(x["passes"] for x in learning),
        "pilot_wall_s": time.time() - start,
    }
    write_atomic(log_dir / "pilot.json", json.dumps(outcome, indent=1) + "\n")
    write_atomic(log_dir / "pilot.md", pilot_markdown(outcome))
    return outcome


def pilot_markdown(outcome: Dict[str, Any]) -> str:
    """The pilot's tables: step times, evaluations, streams, P(S), learning check."""
    steps = markdown_table(
        ["Arm", "w", "Batch", "CPU ms / step"],
        [
            [
                t["arm"],
                "-" if t["weight"] is None else f"{t['weight']:g}",
                t["batch"],
                f"{1000 * t['cpu_s_per_step']:.1f}",
            ]
            for t in outcome["timings"]["steps"]
        ],
        "llrr",
    )
    evals = markdown_table(
        ["Arm", "w", "kNN s", "Snapshot + checkpoint s", "Probe s"],
        [
            [
                t["arm"],
                "-" if t["weight"] is None else f"{t['weight']:g}",
                f"{t['knn_s']:.2f}",
                f"{t['snapshot_s']:.2f}",
                f"{t['probe_s']:.2f}",
            ]
            for t in outcome["timings"]["evaluations"]
        ],
        "llrrr",
    )
    streams = markdown_table(
        ["Method", "Images / CPU s"],
        [
            [t["method"], f"{t['images_per_s']:.0f}"]
            for t in outcome["timings"]["streams"]
        ],
        "lr",
    )
    proj = markdown_table(
        [
            "S",
            "Training s",
            "Evaluation s",
            "Streams s",
            "Untrained s",
            "Sum (one thread) s",
            "P(S) h",
        ],
        [
            [
                p["S"],
                f"{p['training_s']:.0f}",
                f"{p['evaluation_s']:.0f}",
                f"{p['streams_s']:.0f}",
                f"{p['untrained_s']:.0f}",
                f"{p['one_thread_s']:.0f}",
                f"{p['projected_h']:.2f}",
            ]
            for p in outcome["projections"]
        ],
        "rrrrrrr",
    )
    learn = markdown_table(
        ["Run", "Untrained kNN", "Final kNN", "Gain", "≥ 0.02"],
        [
            [
                x["run_id"],
                f"{x['untrained_knn']:.4f}",
                f"{x['final_knn']:.4f}",
                f"{x['gain']:+.4f}",
                "yes" if x["passes"] else "no",
            ]
            for x in outcome["learning_check"]
        ],
        "lrrrl",
    )
    return (
        f"# Mechanism study pilot (seed {outcome['seed']}, {outcome['date']})\n\n"
        "CPU time of the worker processes (one thread each, two at a time).\n\n"
        f"## Step times\n\n{steps}\n## Evaluation\n\n{evals}\n## View streams\n\n{streams}\n"
        f"## Projection P(S) = {PACKING} x sum / {STREAMS} (limit {outcome['limit_h']} h)\n\n{proj}\n"
        f"Chosen S = {outcome['chosen_S']}.\n\n## Learning check at S = {outcome['chosen_S']}\n\n{learn}\n"
        f"Passed: {'yes' if outcome['learning_check_passed'] else 'no'}.\n"
    )


__all__ = ["run_pilot", "projection", "choose", "configurations", "np"]
