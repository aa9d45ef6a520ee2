"""The study's plots: kNN over steps per arm, collapse diagnostics from the corpus."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks.common.figures import pyplot, save_figure_atomic
from benchmarks.studies.mechanism.config import ARMS, METHODS, StudyConfig
from benchmarks.studies.mechanism.corpus import load_run
from lightly_er.functional import collapse_score, effective_rank
from lightly_er.utils.io import write_atomic

DIAGNOSTICS = (
    "backbone_effective_rank",
    "backbone_collapse_score",
    "prototype_entropy",
)
"""What :func:`diagnostics` computes per snapshot from a corpus file."""


def prototype_entropy(logits: np.ndarray, temperature: float) -> float:
    """Entropy of the mean softmax(logits / temperature) over images, over log K.

    1 when the batch uses every prototype equally, 0 when all images pick one.
    """
    x = torch.from_numpy(logits.astype(np.float32)) / temperature
    mean = torch.softmax(x, dim=1).mean(0)
    entropy = -(mean * torch.log(mean.clamp_min(1e-30))).sum()
    return float(entropy / math.log(x.shape[1]))


def diagnostics(
    arrays: Mapping[str, np.ndarray], loss: Mapping[str, Any]
) -> Dict[str, List[Optional[float]]]:
    """Per snapshot of one run: the backbone's effective rank (RankMe) and collapse
    score (``lightly_er.functional``), and for DINO (student) and SwAV the
    prototype entropy at the loss's temperature (None for the others)."""
    out: Dict[str, List[Optional[float]]] = {k: [] for k in DIAGNOSTICS}
    for t in range(len(arrays["step"])):
        z = torch.from_numpy(arrays["backbone"][t].astype(np.float32))
        out["backbone_effective_rank"].append(float(effective_rank(z)))
        out["backbone_collapse_score"].append(float(collapse_score(z)))
        if "student_logits" in arrays:
            temp = loss.get("student_temp") or 0.1
            out["prototype_entropy"].append(
                prototype_entropy(arrays["student_logits"][t], temp)
            )
        elif "prototype_scores" in arrays:
            temp = loss.get("temperature") or 0.1
            out["prototype_entropy"].append(
                prototype_entropy(arrays["prototype_scores"][t], temp)
            )
        else:
            out["prototype_entropy"].append(None)
    return out


def corpus_diagnostics(
    corpus: Path, entries: Sequence[Mapping[str, Any]], cache: Path
) -> Dict[str, Dict[str, Any]]:
    """Diagnostics of every indexed run, cached by file size and time in ``cache``."""
    try:
        cached: Dict[str, Dict[str, Any]] = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    result: Dict[str, Dict[str, Any]] = {}
    for entry in entries:
        path = corpus / entry["file"]
        if not path.exists():
            continue
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        hit = cached.get(entry["run_id"])
        if hit is None or hit.get("stamp") != stamp:
            arrays = load_run(path)
            hit = {
                "stamp": stamp,
                "step": arrays["step"].tolist(),
                **diagnostics(arrays, entry["loss"]),
            }
        result[entry["run_id"]] = hit
    write_atomic(cache, json.dumps(result) + "\n")
    return result


def _style(arm: str, weight: Optional[float], arms: Sequence[str]) -> Dict[str, Any]:
    colours = [f"C{i}" for i in range(10)]
    colour = colours[list(arms).index(arm) % 10]
    dash = "-" if weight == 1.0 else "--" if weight == 0.0 else ":"
    return {"color": colour, "linestyle": dash}


def _label(arm: str, weight: Optional[float]) -> str:
    return arm if weight is None else f"{arm} w={weight:g}"


def _grouped(
    records: Sequence[Mapping[str, Any]],
) -> Dict[Tuple[str, Optional[float], int, int], List[Mapping[str, Any]]]:
    groups: Dict[Tuple[str, Optional[float], int, int], List[Mapping[str, Any]]] = {}
    for r in records:
        s = r["spec"]
        groups.setdefault((s["arm"], s["weight"], s["batch"], s["steps"]), []).append(r)
    return groups


def _average(curves: Sequence[Sequence[Optional[float]]]) -> List[float]:
    length = min(len(c) for c in curves)
    out = []
    for i in range(length):
        values = [c[i] for c in curves if c[i] is not None and not math.isnan(c[i])]  # type: ignore[arg-type]
        out.append(statistics.fmean(values) if values else math.nan)  # type: ignore[arg-type]
    return out


def plot_knn(
    records: Sequence[Mapping[str, Any]],
    untrained: Mapping[int, float],
    config: StudyConfig,
    path: Path,
) -> None:
    """kNN top-1 over steps, mean over seeds, one panel per method (batch 128)."""
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(METHODS), figsize=(4.2 * len(METHODS), 3.6), squeeze=False
    )
    groups = _grouped(records)
    floor = statistics.fmean(untrained.values()) if untrained else math.nan
    for ax, method in zip(axes[0], METHODS, strict=True):
        arms = [a for a in ARMS if ARMS[a].method == method]
        for (arm, w, batch, steps), runs in sorted(
            groups.items(),
            key=lambda kv: (
                arms.index(kv[0][0]) if kv[0][0] in arms else 99,
                str(kv[0][1]),
            ),
        ):
            if arm not in arms or batch != config.batch or steps != config.steps:
                continue
            x = runs[0]["evals"]["step"]
            y = _average([r["evals"]["knn_top1"] for r in runs])
            ax.plot(
                x[: len(y)],
                y,
                label=f"{_label(arm, w)} (n={len(runs)})",
                **_style(arm, w, arms),
            )
        ax.axhline(floor, color="gray", linewidth=0.8, label="untrained (mean)")
        ax.set_title(method)
        ax.set_xlabel("step")
        ax.set_ylabel("kNN top-1")
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def plot_batch_axis(
    records: Sequence[Mapping[str, Any]], config: StudyConfig, path: Path
) -> None:
    """kNN top-1 against samples seen for the batch axis (BYOL, DINO, SimCLR)."""
    plt = pyplot()
    members = ("byol", "dino", "simclr")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), squeeze=False)
    groups = _grouped(records)
    for ax, method in zip(axes[0], members, strict=True):
        for (arm, w, batch, steps), runs in sorted(
            groups.items(), key=lambda kv: str(kv[0])
        ):
            if ARMS[arm].method != method or arm not in (
                "byol",
                "dino",
                "simclr",
                "simclr-er",
            ):
                continue
            if arm == "simclr-er" and w != 1.0:
                continue
            x = [s * batch for s in runs[0]["evals"]["step"]]
            y = _average([r["evals"]["knn_top1"] for r in runs])
            style = {"linestyle": "-" if w == 1.0 else "--"}
            ax.plot(
                x[: len(y)], y, label=f"{_label(arm, w)} b{batch} s{steps}", **style
            )
        ax.set_title(f"{method}: batch axis")
        ax.set_xlabel("samples seen")
        ax.set_ylabel("kNN top-1")
        ax.legend(fontsize=5)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def plot_diagnostics(
    records: Sequence[Mapping[str, Any]],
    diag: Mapping[str, Mapping[str, Any]],
    config: StudyConfig,
    path: Path,
) -> None:
    """Backbone effective rank and collapse score, prototype entropy, over steps."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(METHODS), 3, figsize=(14, 3.0 * len(METHODS)), squeeze=False
    )
    groups = _grouped(records)
    titles = (
        "backbone effective rank",
        "backbone collapse score",
        "prototype entropy / log K",
    )
    for row, method in zip(axes, METHODS, strict=True):
        arms = [a for a in ARMS if ARMS[a].method == method]
        for (arm, w, batch, steps), runs in sorted(
            groups.items(),
            key=lambda kv: (
                arms.index(kv[0][0]) if kv[0][0] in arms else 99,
                str(kv[0][1]),
            ),
        ):
            if arm not in arms or batch != config.batch or steps != config.steps:
                continue
            found = [diag[r["run_id"]] for r in runs if r["run_id"] in diag]
            if not found:
                continue
            x = found[0]["step"]
            for ax, name in zip(row, DIAGNOSTICS, strict=True):
                if found[0][name][0] is None:
                    continue
                y = _average([d[name] for d in found])
                ax.plot(x[: len(y)], y, label=_label(arm, w), **_style(arm, w, arms))
        for ax, title in zip(row, titles, strict=True):
            ax.set_title(f"{method}: {title}", fontsize=9)
            ax.set_xlabel("step")
            if ax.lines:
                ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
