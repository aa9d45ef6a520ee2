"""The collapse corpus: every run's head outputs on a held-out batch, over steps.

Format version 1, as ``benchmarks/studies/mechanism_preregistration.md`` fixes it::

    DIR/corpus/index.json        the runs, one entry each
    DIR/corpus/<run_id>.npz      every snapshot of a finished run
    DIR/corpus/partial/<run_id>/step_<000000>.npz
                                 snapshots of an unfinished run

A ``<run_id>.npz`` holds ``step`` (T,), ``knn_top1``, ``train_loss``,
``train_entropy``, ``train_reconstruction`` (T,), ``image_index`` and ``label``
(N,), and per head a float16 array (T, N, d) (``center``: float32 (T, 2048)),
and, where the study keeps it, ``backbone_views`` (2, N, d) of the last snapshot
(:mod:`benchmarks.studies.mechanism.views`; a partial ``<key>.npy`` until then). A
head with a finite value beyond float16's range (65504: a collapsed head's outputs
in eval mode can be) is kept in float32 instead, so that no value is written as inf;
readers convert every head to float32.
:func:`load_run` reads one; :func:`read_index` the index.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from lightly_er.utils.io import atomic_path, write_atomic

FORMAT = "lightly-er collapse corpus"
VERSION = 1
SCALARS = ("knn_top1", "train_loss", "train_entropy", "train_reconstruction")
"""Per-snapshot numbers (float32, NaN where there is none)."""
FLOAT32_KEYS = ("center",)
"""Head outputs kept in float32 (the rest are float16)."""


FLOAT16_MAX = float(np.finfo(np.float16).max)


def head_array(key: str, array: Any) -> np.ndarray:
    """A head's outputs as stored: float16, or float32 if float16 would overflow."""
    values: np.ndarray = np.asarray(array, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if key in FLOAT32_KEYS or (finite.size and np.abs(finite).max() > FLOAT16_MAX):
        return values
    stored: np.ndarray = values.astype(np.float16)
    return stored


def corpus_dir(log_dir: Path) -> Path:
    return log_dir / "corpus"


def partial_path(log_dir: Path, run_id: str, step: int) -> Path:
    return corpus_dir(log_dir) / "partial" / run_id / f"step_{step:06d}.npz"


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # uncompressed


def write_snapshot(
    log_dir: Path,
    run_id: str,
    step: int,
    outputs: Mapping[str, Any],
    scalars: Mapping[str, float],
) -> None:
    """Writes one snapshot of an unfinished run (atomically)."""
    arrays: Dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        array = (
            value.detach().float().cpu().numpy() if hasattr(value, "detach") else value
        )
        arrays[key] = head_array(key, array)
    for key in SCALARS:
        arrays[key] = np.asarray(scalars.get(key, float("nan")), dtype=np.float32)
    _save_npz(partial_path(log_dir, run_id, step), arrays)


def write_extra(log_dir: Path, run_id: str, key: str, value: Any) -> None:
    """Writes an array kept once per run (not per snapshot), atomically."""
    array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else value
    path = partial_path(log_dir, run_id, 0).with_name(f"{key}.npy")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, head_array(key, array))


def merge_run(
    log_dir: Path,
    run_id: str,
    steps: Sequence[int],
    image_index: np.ndarray,
    labels: np.ndarray,
) -> Path:
    """Stacks the snapshots of ``steps`` into ``<run_id>.npz``; removes the partials."""
    snapshots = []
    for step in steps:
        with np.load(partial_path(log_dir, run_id, step)) as f:
            snapshots.append({k: f[k] for k in f.files})
    keys = list(snapshots[0])
    arrays: Dict[str, np.ndarray] = {"step": np.asarray(steps, dtype=np.int64)}
    for key in keys:
        arrays[key] = np.stack([s[key] for s in snapshots])
    arrays["image_index"] = np.asarray(image_index, dtype=np.int64)
    arrays["label"] = np.asarray(labels, dtype=np.int64)
    for extra in sorted(partial_path(log_dir, run_id, 0).parent.glob("*.npy")):
        arrays[extra.stem] = np.load(extra)
    path = corpus_dir(log_dir) / f"{run_id}.npz"
    _save_npz(path, arrays)
    shutil.rmtree(corpus_dir(log_dir) / "partial" / run_id, ignore_errors=True)
    return path


def load_run(path: Path) -> Dict[str, np.ndarray]:
    """Every array of one run's corpus file."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def index_entry(record: Mapping[str, Any]) -> Dict[str, Any]:
    """A run's entry of index.json, from its run record."""
    spec = record["spec"]
    # A comparator term (the rescue study's arms) is named; other runs are as before.
    term = {} if spec.get("term") is None else {"term": spec["term"]}
    return {
        **term,
        "run_id": record["run_id"],
        "file": f"{record['run_id']}.npz",
        "arm": spec["arm"],
        "method": record["method"],
        "entropy_weight": spec["weight"],
        "ema": record["ema"],
        "batch_size": spec["batch"],
        "steps": spec["steps"],
        "seed": spec["seed"],
        "untrained_knn": record["untrained_knn"],
        "final_knn": record["final_knn"],
        "final_probe": record["final_probe"],
        "label": record["label"],
        "first_below_step": record["first_below_step"],
        "heads": record["heads"],
        "loss": record["loss"],
        "lightly": record["versions"]["lightly"],
        "torch": record["versions"]["torch"],
        "wall_s": record["timing"]["wall_s"],
    }


def index_document(
    records: Sequence[Mapping[str, Any]],
    held_out: Mapping[str, Any],
    knn: Mapping[str, Any],
) -> Dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "held_out": dict(held_out),
        "knn": dict(knn),
        "runs": [index_entry(r) for r in records],
    }


def write_index(path: Path, document: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(document, indent=1) + "\n")


def read_index(corpus: Path) -> Dict[str, Any]:
    """The corpus's index.json, checked for format and version.

    Raises:
        ValueError: If it is not a version-1 collapse corpus index.
    """
    document: Dict[str, Any] = json.loads((corpus / "index.json").read_text())
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise ValueError(f"{corpus / 'index.json'} is not a {FORMAT} version {VERSION}")
    return document
