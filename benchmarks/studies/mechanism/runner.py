"""The work of the study: view streams, untrained evaluations and training runs.

A run is a plain PyTorch loop over a method module's ``training_step``, reading
its batches from the (method, seed) view stream by step. At every evaluation it
writes the corpus snapshot and then a checkpoint (model, optimizer, schedule, step,
random states, the evaluations so far), both atomically, so a run killed at any
moment resumes from its last evaluation with the same next batch and ends with the
same record. A finished run writes its corpus file, then its record (a
:class:`benchmarks.common.records.RunRecord`, naming the code it was made with), and
deletes its checkpoint: the record's presence is what "finished" means.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import lightly
import numpy as np
import torch

from benchmarks.common.code import (
    CodeVersion,
    current_code,
    read_started,
    write_started,
)
from benchmarks.common.records import RunRecord
from benchmarks.studies.mechanism import corpus
from benchmarks.studies.mechanism.config import (
    RunSpec,
    StudyConfig,
    eval_steps,
    is_wide,
    stream_samples,
)
from benchmarks.studies.mechanism.data import (
    EvalData,
    GreyData,
    batch_views,
    eval_data,
    generate_stream,
    grey_pipelines,
    load_grey,
    open_stream,
)
from benchmarks.studies.mechanism.evaluation import (
    chance,
    evaluate,
    features,
    first_below,
    label_of,
)
from benchmarks.studies.mechanism.models import (
    build_backbone,
    build_model,
    head_outputs,
    loss_description,
    optimiser,
    training_loss,
)
from benchmarks.studies.mechanism.views import backbone_views
from lightly_er.utils.io import atomic_path, write_atomic

ENGINE = "mechanism"
"""The engine name in the study's run records."""
LOSS_KEYS = ("train_loss", "train_entropy", "train_reconstruction")


class Interrupted(Exception):
    """Raised by a test hook to stop a run as a kill would (tests only)."""


def stream_path(log_dir: Path, method: str, seed: int) -> Path:
    return log_dir / "streams" / f"{method}_seed{seed}.npy"


def untrained_path(log_dir: Path, seed: int, wide: bool = False) -> Path:
    return log_dir / "untrained" / f"seed{seed}{'_wide' if wide else ''}.json"


def untrained_features_path(log_dir: Path, seed: int, wide: bool = False) -> Path:
    return log_dir / "untrained" / f"seed{seed}{'_wide' if wide else ''}_held_out.npy"


def record_path(log_dir: Path, run_id: str) -> Path:
    return log_dir / "records" / f"{run_id}.json"


def checkpoint_path(log_dir: Path, run_id: str) -> Path:
    return log_dir / "checkpoints" / f"{run_id}.pt"


def started_code_path(log_dir: Path, run_id: str) -> Path:
    """The code a run was started with, beside its checkpoint (the resume rule)."""
    return log_dir / "checkpoints" / f"{run_id}.code.json"


@dataclass
class Env:
    """What every task of a worker process needs, loaded once per process."""

    config: StudyConfig
    log_dir: Path
    data_dir: Optional[Path]
    parent: Optional[int] = None
    """The parent's pid; a worker stops when its parent is gone (killed)."""
    stop_after: Optional[int] = None
    """Tests: raise :class:`Interrupted` after this many steps of a run."""
    code: Optional[CodeVersion] = None
    """The code of the study's process (None: read from the checkout when needed)."""
    backbone_views: bool = False
    """Keep ``backbone_views`` at a run's last snapshot (:mod:`.views`)."""
    _data: Optional[GreyData] = field(default=None, repr=False)
    _eval: Optional[EvalData] = field(default=None, repr=False)

    @property
    def data(self) -> GreyData:
        if self._data is None:
            c = self.config
            self._data = load_grey(self.data_dir, c.train_size, c.test_size)
        return self._data

    @property
    def eval(self) -> EvalData:
        if self._eval is None:
            c = self.config
            self._eval = eval_data(self.data, c.bank_size, c.bank_seed, c.held_out)
        return self._eval

    @property
    def run_code(self) -> CodeVersion:
        """The code the runs are made with (:func:`current_code`, read once)."""
        if self.code is None:
            self.code = current_code(ignore=[self.log_dir])
        return self.code

    def check_parent(self) -> None:
        if self.parent is not None and os.getppid() != self.parent:
            raise SystemExit("the study's main process is gone; stopping")


def setup_process() -> None:
    """One thread per process (two processes share the 2 cores), quiet Lightning."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
    warnings.filterwarnings(
        "ignore", message=r".*weight_norm.*", category=FutureWarning
    )


def versions() -> Dict[str, str]:
    return {
        "lightly": str(getattr(lightly, "__version__", "unknown")),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def make_stream(env: Env, method: str, seed: int) -> Dict[str, float]:
    """Writes the view stream of (method, seed) unless it is there."""
    path = stream_path(env.log_dir, method, seed)
    samples = stream_samples(env.config)
    try:
        open_stream(path, samples)
        return {"cpu_s": 0.0}
    except (OSError, ValueError):
        pass
    cpu = time.process_time()
    generate_stream(
        path, method, seed, env.data.train, samples, env.config.batch, env.check_parent
    )
    return {"cpu_s": time.process_time() - cpu, "samples": float(samples)}


def untrained(env: Env, seed: int, wide: bool = False) -> Dict[str, Any]:
    """kNN and probe of the seed's backbone before training, and its held-out features."""
    path = untrained_path(env.log_dir, seed, wide)
    if path.exists():
        result: Dict[str, Any] = json.loads(path.read_text())
        return result
    c, ev = env.config, env.eval
    cpu = time.process_time()
    backbone = build_backbone(seed, wide)
    knn, probe = evaluate(
        backbone, ev.bank, ev.bank_labels, ev.test, ev.test_labels, c.knn_k, c.knn_t,
        True, c.probe_iterations, c.probe_l2,
    )  # fmt: skip
    held_out = features(backbone, ev.held_out).numpy()
    with (
        atomic_path(untrained_features_path(env.log_dir, seed, wide)) as tmp,
        open(tmp, "wb") as f,
    ):
        np.save(f, held_out)
    result = {
        "seed": seed,
        "knn": knn,
        "probe": probe,
        "cpu_s": time.process_time() - cpu,
    }
    write_atomic(path, json.dumps(result, indent=1) + "\n")
    return result


def _rng_state() -> Dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def no_nan(value: Any) -> Any:
    """NaN as null, so that the records are standard JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value


def _mean(values: List[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def new_state() -> Dict[str, Any]:
    """The state of a run before its first step (what its checkpoints hold)."""
    return {
        "step": 0,
        "evals": {k: [] for k in ("step", "knn_top1", *LOSS_KEYS)},
        "final_probe": None,
        "diverged_step": None,
        "heads": {},
        "timing": {"wall_s": 0.0, "cpu_s": 0.0, "resumes": 0},
    }


def _resume(
    env: Env, run_id: str, model: Any, optimizer: Any, scheduler: Any
) -> Dict[str, Any]:
    """The run's state: its checkpoint's (model, optimizer, scheduler and random
    state restored in place), or a new one after naming the code it starts with."""
    ckpt = checkpoint_path(env.log_dir, run_id)
    if not ckpt.exists():
        write_started(started_code_path(env.log_dir, run_id), env.run_code)
        return new_state()
    state: Dict[str, Any] = torch.load(ckpt, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    state["timing"]["resumes"] += 1
    return state


def _scores(
    env: Env,
    spec: RunSpec,
    model: Any,
    step: int,
    base: Dict[str, Any],
    state: Dict[str, Any],
) -> Tuple[float, float]:
    """kNN top-1 and probe accuracy at a snapshot: the untrained network's at step
    0, NaN at a snapshot without kNN; the last step's probe goes into ``state``."""
    c, ev = env.config, env.eval
    if step == 0:
        return base["knn"], base["probe"]
    if c.knn_every is not None and step % c.knn_every and step != spec.steps:
        return math.nan, math.nan  # a snapshot without kNN
    last = step == spec.steps
    knn, probe = evaluate(
        model.backbone, ev.bank, ev.bank_labels, ev.test, ev.test_labels,
        c.knn_k, c.knn_t, last, c.probe_iterations, c.probe_l2,
    )  # fmt: skip
    if last:
        state["final_probe"] = probe
    return knn, probe


def train_run(env: Env, spec: RunSpec) -> Dict[str, Any]:
    """Trains one run to its end (resuming from its checkpoint) and returns its record."""
    log_dir, c, ev = env.log_dir, env.config, env.eval
    run_id = spec.run_id
    done = record_path(log_dir, run_id)
    if done.exists():
        finished: Dict[str, Any] = json.loads(done.read_text())
        return finished
    wall, cpu = time.time(), time.process_time()
    base = untrained(env, spec.seed, is_wide(spec.arm))
    reference_path = untrained_features_path(log_dir, spec.seed, is_wide(spec.arm))
    reference = torch.from_numpy(np.load(reference_path))
    stream = open_stream(
        stream_path(log_dir, spec.method, spec.seed), spec.batch * spec.steps
    )
    _, normalize = grey_pipelines(spec.method, env.data.train.shape[1])
    schedule = eval_steps(spec.steps, c.evaluations)

    model = build_model(spec, num_classes=int(ev.test_labels.max()) + 1)
    optimizer, scheduler = optimiser(model)
    ckpt = checkpoint_path(log_dir, run_id)
    state = _resume(env, run_id, model, optimizer, scheduler)

    def snapshot(step: int, losses: Dict[str, List[float]]) -> None:
        model.eval()
        outputs = head_outputs(model, ev.held_out)
        if not all(bool(torch.isfinite(v).all()) for v in outputs.values()):
            raise FloatingPointError(f"{run_id}: NaN or Inf head outputs at {step}")
        # Built first after seeding: at step 0, the untrained network of the seed.
        if step == 0 and not torch.equal(outputs["backbone"], reference):
            raise RuntimeError(
                f"{run_id}: step-0 backbone differs from the seed's untrained network"
            )
        knn, probe = _scores(env, spec, model, step, base, state)
        if env.backbone_views and step == spec.steps:
            backbone_views(env.data.test, ev, spec, model, log_dir)
        model.train()
        scalars = {"knn_top1": knn, **{k: _mean(losses.get(k, [])) for k in LOSS_KEYS}}
        corpus.write_snapshot(log_dir, run_id, step, outputs, scalars)
        evals = state["evals"]
        evals["step"].append(step)
        for key in ("knn_top1", "train_loss", "train_entropy", "train_reconstruction"):
            evals[key].append(float(scalars[key]))
        state["heads"] = {k: int(v.shape[-1]) for k, v in outputs.items()}
        state["step"] = step

    def checkpoint() -> None:
        now_wall, now_cpu = time.time(), time.process_time()
        state["timing"]["wall_s"] += now_wall - wall_mark[0]
        state["timing"]["cpu_s"] += now_cpu - cpu_mark[0]
        wall_mark[0], cpu_mark[0] = now_wall, now_cpu
        state.update(
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=_rng_state(),
        )
        _save_checkpoint(ckpt, state)

    wall_mark, cpu_mark = [wall], [cpu]
    model.train()
    if not state["evals"]["step"]:
        snapshot(0, {})
        checkpoint()
    losses: Dict[str, List[float]] = {k: [] for k in LOSS_KEYS}
    steps_done = 0
    for step in range(state["step"], spec.steps):
        env.check_parent()
        if env.stop_after is not None and steps_done >= env.stop_after:
            raise Interrupted(f"{run_id} stopped at step {step}")
        views = batch_views(stream, step, spec.batch, normalize)
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = training_loss(model, views, step)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{run_id}: loss {value}")
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            steps_done += 1
            losses["train_loss"].append(value)
            components = getattr(model.criterion, "last_components", None)
            if components is not None:
                losses["train_entropy"].append(float(components.entropy))
                losses["train_reconstruction"].append(float(components.reconstruction))
            if step + 1 in schedule:
                snapshot(step + 1, losses)
                checkpoint()
                losses = {k: [] for k in losses}
        except (FloatingPointError, ValueError) as error:
            # lightly-er's losses raise ValueError on a non-finite value (they check
            # the first calls after they are built); any other ValueError is a bug.
            if isinstance(error, ValueError) and "not finite" not in str(error):
                raise
            # Divergence rule (rescue registration, changes after registration):
            # the run stops at the step whose loss or features are NaN or Inf and
            # scores a network without information (chance kNN and probe).
            state["diverged_step"] = step + 1
            break
    return _finish(env, spec, state, base, loss_description(model))


def _finish(
    env: Env,
    spec: RunSpec,
    state: Dict[str, Any],
    base: Dict[str, Any],
    loss: Dict[str, Any],
) -> Dict[str, Any]:
    log_dir, c, ev = env.log_dir, env.config, env.eval
    run_id = spec.run_id
    evals = state["evals"]
    corpus.merge_run(
        log_dir, run_id, evals["step"], ev.held_out_index, ev.held_out_labels.numpy()
    )
    diverged = state.get("diverged_step")
    final = evals["knn_top1"][-1] if diverged is None else chance(ev.test_labels)
    if diverged is not None:
        state["final_probe"] = final
    record: Dict[str, Any] = {
        "spec": spec.to_dict(),
        "method": spec.method,
        "ema": spec.ema,
        "evals": evals,
        "untrained_knn": base["knn"],
        "untrained_probe": base["probe"],
        "final_knn": final,
        "best_knn": max(v for v in evals["knn_top1"] if not math.isnan(v)),
        "diverged_step": diverged,
        "final_probe": state["final_probe"],
        "gain": final - base["knn"],
        "label": "diverged"
        if diverged is not None
        else label_of(final, base["knn"], c.collapse_margin, c.learn_margin),
        "first_below_step": first_below(
            evals["step"], evals["knn_top1"], base["knn"], c.collapse_margin
        ),
        "heads": state["heads"],
        "held_out": {
            "first": int(ev.held_out_index[0]),
            "size": len(ev.held_out_index),
        },
        "loss": loss,
        "versions": versions(),
        "timing": state["timing"],
    }
    started = read_started(started_code_path(log_dir, run_id))
    if started is not None and not started.same_code(env.run_code):
        # Resumed across a change of code (--allow-code-change): both are named.
        record["started_with_code"] = started.to_dict()
    done = RunRecord(run_id, ENGINE, env.run_code, no_nan(record))
    done.save(record_path(log_dir, run_id), indent=1)
    checkpoint_path(log_dir, run_id).unlink(missing_ok=True)
    started_code_path(log_dir, run_id).unlink(missing_ok=True)
    return done.to_json()


def run_task(
    env: Env,
    kind: str,
    method: str,
    seed: int,
    spec: Optional[RunSpec],
    wide: bool = False,
) -> Dict[str, Any]:
    """Does one task; returns what the progress line reports."""
    wall, cpu = time.time(), time.process_time()
    if kind == "stream":
        make_stream(env, method, seed)
    elif kind == "untrained":
        untrained(env, seed, wide)
    else:
        assert spec is not None
        train_run(env, spec)
    return {"wall_s": time.time() - wall, "cpu_s": time.process_time() - cpu}


def remove_stale(log_dir: Path) -> None:
    """Leftovers of interrupted atomic writes (``.*.tmp``) go; nothing else."""
    for tmp in log_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
