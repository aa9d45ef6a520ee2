"""The cost per step of each treatment, measured side by side in one process.

For one method, every configuration the study runs (the intact arm at w = 0 first,
then every treatment of the intact arm and of each removal of the method) is built
in one process, one thread, from the same seed, and trained on the same batches
(a short view stream of the method and seed, a prefix of the study's). After
``timing_warmup`` steps of each, ``timing_rounds`` rounds follow; in each, every
configuration runs ``timing_steps`` steps in turn (the order rotated by one each
round), timed in CPU seconds of the process (``time.process_time``). A
configuration's cost is the ratio of its time per step to the intact arm's in the
same round; the table gives the median over rounds and the range. Whatever else
the machine runs slows both sides of a ratio alike (they alternate within seconds).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.studies.mechanism.data import (
    batch_views,
    generate_stream,
    grey_pipelines,
    open_stream,
)
from benchmarks.studies.mechanism.models import build_model, optimiser, training_loss
from benchmarks.studies.mechanism.runner import Env, setup_process
from benchmarks.studies.rescue.config import RescueConfig, spec_of, timing_configs
from lightly_er.utils.io import write_atomic


def timing_path(log_dir: Path, method: str) -> Path:
    return log_dir / "timing" / f"{method}.json"


def _stream(
    env: Env, config: RescueConfig, method: str, seed: int, steps: int
) -> Tuple[Any, Dict[str, float]]:
    """The short view stream of the timing, and the CPU seconds it took to make."""
    batch = config.engine.batch
    path = env.log_dir / "timing" / f"{method}_seed{seed}_stream.npy"
    made = {"samples": float(steps * batch), "cpu_s": 0.0}
    try:
        return open_stream(path, steps * batch), made
    except (OSError, ValueError):
        start = time.process_time()
        generate_stream(path, method, seed, env.data.train, steps * batch, batch)
        made["cpu_s"] = time.process_time() - start
        return open_stream(path, steps * batch), made


def time_method(
    env: Env,
    config: RescueConfig,
    method: str,
    seed: int,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Times every configuration of ``method``; writes and returns the result.

    ``extra`` is added to the result (the study's ``code``).
    """
    path = timing_path(env.log_dir, method)
    if path.exists():
        done: Dict[str, Any] = json.loads(path.read_text())
        return done
    warmup, rounds, k = config.timing_warmup, config.timing_rounds, config.timing_steps
    total = warmup + rounds * k
    start = time.process_time()
    stream, made = _stream(env, config, method, seed, total)
    _, normalize = grey_pipelines(method, env.data.train.shape[1])
    batch = config.engine.batch
    configs = timing_configs(config, method)
    runs = []
    for arm, treatment in configs:
        model = build_model(spec_of(arm, treatment, seed, config.engine))
        optimizer, scheduler = optimiser(model)
        model.train()
        runs.append((model, optimizer, scheduler))

    def steps(index: int, first: int, count: int) -> float:
        model, optimizer, scheduler = runs[index]
        start = time.process_time()
        for step in range(first, first + count):
            views = batch_views(stream, step, batch, normalize)
            optimizer.zero_grad(set_to_none=True)
            loss = training_loss(model, views, step)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            float(loss.detach())
        return (time.process_time() - start) / count

    for index in range(len(runs)):
        steps(index, 0, warmup)
    per_step: List[List[float]] = [[0.0] * rounds for _ in runs]
    for r in range(rounds):
        order = list(range(len(runs)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for index in order:
            per_step[index][r] = steps(index, warmup + r * k, k)
    result = summarize(method, seed, configs, per_step)
    result["settings"] = {"warmup": warmup, "rounds": rounds, "steps": k}
    result["stream"] = made
    result["cpu_s"] = time.process_time() - start
    result.update(extra or {})
    write_atomic(path, json.dumps(result, indent=1) + "\n")
    return result


def summarize(
    method: str,
    seed: int,
    configs: Sequence[Sequence[str]],
    per_step: Sequence[Sequence[float]],
) -> Dict[str, Any]:
    """Per configuration: ms per step and the ratio to the first, per round.

    Examples:
        >>> out = summarize("byol", 0, [("byol", "none"), ("byol", "koleo")],
        ...                 [[0.1, 0.2, 0.1], [0.11, 0.2, 0.12]])
        >>> round(out["configs"][1]["ratio_median"], 6)
        1.1
    """
    reference = per_step[0]
    rows = []
    for (arm, treatment), times in zip(configs, per_step, strict=True):
        ratios = [t / ref for t, ref in zip(times, reference, strict=True)]
        rows.append(
            {
                "arm": arm,
                "treatment": treatment,
                "ms_per_step": [1000 * t for t in times],
                "ratio": ratios,
                "ms_median": 1000 * statistics.median(times),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    return {
        "method": method,
        "seed": seed,
        "reference": rows[0]["arm"],
        "configs": rows,
    }


_ENV: Optional[Env] = None
_CONFIG: Optional[RescueConfig] = None


def _init(config: RescueConfig, log_dir: Path, data_dir: Optional[Path]) -> None:
    global _ENV, _CONFIG
    setup_process()
    _ENV, _CONFIG = Env(config.engine, log_dir, data_dir), config


def _call(job: Sequence[Any]) -> Dict[str, Any]:
    assert _ENV is not None and _CONFIG is not None
    method, seed, extra = job
    return time_method(_ENV, _CONFIG, method, seed, extra)


def run_timing(
    config: RescueConfig,
    log_dir: Path,
    data_dir: Optional[Path],
    seed: int,
    workers: int = 2,
    methods: Optional[Sequence[str]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """Times every method of the study (skipping those already timed)."""
    jobs = [(m, seed, extra) for m in (methods or config.methods())]
    if workers <= 1:
        _init(config, log_dir, data_dir)
        return [_call(job) for job in jobs]
    with ProcessPoolExecutor(
        min(workers, len(jobs)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(config, log_dir, data_dir),
    ) as pool:
        return list(pool.map(_call, jobs))
