"""Head collapse, read from a run's corpus file: the secondary outcome.

A trained head has *collapsed* when its outputs no longer depend on the input,
measured in eval mode on the held-out batch (the corpus's snapshots, every 50
steps) by a statistic the training loss does not optimize:

- **embedding heads** (BYOL, SimSiam: the projection z, as Chen & He measure it):
  the per-dimension standard deviation of the L2-normalized outputs over the batch,
  averaged over the d dimensions, times sqrt(d), below ``embedding_threshold``
  (0.1; about 1 for outputs spread over the sphere, 0 when every input gives one
  output);
- **prototype heads** (DINO; SwAV): KL(teacher || student) below ``kl_epsilon``
  with the teacher's distribution input-independent in one of two modes: the
  entropy of its batch mean below ``entropy_epsilon`` (*one prototype*: every
  input on the same prototype) or its mean per-image entropy above
  log K - ``entropy_epsilon`` (*uniform*: every input spread evenly). The teacher
  is the target the arm's loss computes: DINO softmax((t - center) / τ_t) (without
  the center where centering is off), SwAV its codes (lightly's Sinkhorn, or
  softmax(s / ε) without it); the student is softmax(s / τ_s).

A run's head has collapsed when the criterion holds at its last snapshot; the
*onset* is the first snapshot of the unbroken stretch of snapshots that meet it up
to the end. The snapshot at step 0 (the untrained head) is not read.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from lightly.loss.swav_loss import sinkhorn
from torch.nn import functional as F

from lightly_er.utils.io import write_atomic

EMBEDDING_HEADS: Dict[str, str] = {"byol": "projection", "simsiam": "projection"}
"""The embedding head read per method (the prototype methods read their logits)."""


@dataclass(frozen=True)
class Thresholds:
    """The registered thresholds (``RescueConfig``'s)."""

    embedding: float = 0.1
    kl: float = 0.1
    entropy: float = 0.1


def embedding_spread(z: np.ndarray) -> np.ndarray:
    """sqrt(d) x the mean per-dimension std of the L2-normalized rows, per snapshot.

    Args:
        z: Head outputs (T, N, d).

    Returns:
        (T,) values: about 1 for outputs spread over the sphere, 0 for one output.

    Examples:
        >>> import numpy as np
        >>> float(embedding_spread(np.ones((1, 5, 4)))[0])
        0.0
    """
    x = torch.as_tensor(np.asarray(z, dtype=np.float32))
    x = F.normalize(x, dim=-1)
    std = x.std(dim=1, unbiased=False).mean(dim=-1)
    return (std * math.sqrt(x.shape[-1])).numpy()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def prototype_stats(
    teacher: torch.Tensor, student_log: torch.Tensor
) -> Tuple[float, float, float]:
    """(KL(teacher || student) mean over the batch, entropy of the batch-mean
    teacher, mean per-image teacher entropy), in nats.

    Args:
        teacher: Teacher probabilities (N, K).
        student_log: Student log-probabilities (N, K).
    """
    log_teacher = torch.log(teacher.clamp_min(1e-30))
    kl = (teacher * (log_teacher - student_log)).sum(-1).mean()
    marginal = _entropy(teacher.mean(0))
    per_image = _entropy(teacher).mean()
    return float(kl), float(marginal), float(per_image)


def _dino(arrays: Mapping[str, np.ndarray], loss: Mapping[str, Any], t: int) -> Any:
    teacher = torch.as_tensor(arrays["teacher_logits"][t].astype(np.float32))
    student = torch.as_tensor(arrays["student_logits"][t].astype(np.float32))
    if loss.get("centering") and "center" in arrays:
        teacher = teacher - torch.as_tensor(arrays["center"][t].astype(np.float32))
    p_t = F.softmax(teacher / float(loss["teacher_temp"]), dim=-1)
    return p_t, F.log_softmax(student / float(loss["student_temp"]), dim=-1)


def _swav(arrays: Mapping[str, np.ndarray], loss: Mapping[str, Any], t: int) -> Any:
    scores = torch.as_tensor(arrays["prototype_scores"][t].astype(np.float32))
    epsilon = float(loss.get("epsilon") or 0.05)
    if loss.get("sinkhorn"):
        q = sinkhorn(scores, iterations=3, epsilon=epsilon)
    else:
        q = F.softmax(scores / epsilon, dim=-1)
    temperature = float(loss.get("temperature") or 0.1)
    return q, F.log_softmax(scores / temperature, dim=-1)


@dataclass
class HeadReading:
    """One run's head: its statistic per snapshot and the collapse reading.

    Attributes:
        family: ``embedding`` or ``prototype``.
        head: The corpus key read (``projection``, ``teacher_logits``,
            ``prototype_scores``).
        steps: The snapshots' steps (step 0 included, not read).
        values: Per snapshot: ``spread`` (embedding) or ``kl``, ``marginal``,
            ``per_image`` (prototype).
        met: Per snapshot, whether the criterion holds (False at step 0).
        modes: Per snapshot, ``one prototype``, ``uniform`` or "" (prototype).
        collapsed: The criterion holds from ``onset`` to the last snapshot.
        onset: The step the terminal stretch starts at, or None.
        mode: The prototype mode at the last snapshot ("" otherwise).
    """

    family: str
    head: str
    steps: List[int]
    values: Dict[str, List[float]]
    met: List[bool]
    modes: List[str]
    collapsed: bool
    onset: Optional[int]
    mode: str


def terminal_onset(steps: Sequence[int], met: Sequence[bool]) -> Optional[int]:
    """The first step of the unbroken stretch of met snapshots ending at the last.

    Examples:
        >>> terminal_onset([0, 50, 100, 150], [False, True, False, True])
        150
        >>> terminal_onset([0, 50, 100], [True, True, False]) is None
        True
    """
    onset = None
    for step, hit in zip(reversed(steps), reversed(met), strict=True):
        if not hit:
            break
        onset = step
    return onset


def read_head(
    arrays: Mapping[str, np.ndarray],
    method: str,
    loss: Mapping[str, Any],
    thresholds: Thresholds = Thresholds(),
) -> HeadReading:
    """The head-collapse reading of one run's corpus arrays.

    Raises:
        ValueError: For a method without a registered head.
    """
    steps = [int(s) for s in arrays["step"]]
    first = [s == 0 for s in steps]  # the untrained head is not read
    if method in EMBEDDING_HEADS:
        head = EMBEDDING_HEADS[method]
        spread = embedding_spread(arrays[head]).tolist()
        met = [
            not f and v < thresholds.embedding
            for v, f in zip(spread, first, strict=True)
        ]
        onset = terminal_onset(steps, met)
        return HeadReading("embedding", head, steps, {"spread": spread}, met,
                           [""] * len(steps), onset is not None, onset, "")  # fmt: skip
    if method == "dino":
        head, probs = "teacher_logits", _dino
    elif method == "swav":
        head, probs = "prototype_scores", _swav
    else:
        raise ValueError(f"no registered head for method {method!r}")
    values: Dict[str, List[float]] = {"kl": [], "marginal": [], "per_image": []}
    met, modes = [], []
    log_k = math.log(arrays[head].shape[-1])
    for t, skip in enumerate(first):
        kl, marginal, per_image = prototype_stats(*probs(arrays, loss, t))
        for key, v in (("kl", kl), ("marginal", marginal), ("per_image", per_image)):
            values[key].append(v)
        mode = ""
        if kl < thresholds.kl and marginal < thresholds.entropy:
            mode = "one prototype"
        elif kl < thresholds.kl and per_image > log_k - thresholds.entropy:
            mode = "uniform"
        met.append(bool(mode) and not skip)
        modes.append(mode if not skip else "")
    onset = terminal_onset(steps, met)
    collapsed = onset is not None
    return HeadReading("prototype", head, steps, values, met, modes, collapsed, onset,
                       modes[-1] if collapsed else "")  # fmt: skip


def cached_reading(
    log_dir: Path,
    run_id: str,
    method: str,
    loss: Mapping[str, Any],
    thresholds: Thresholds = Thresholds(),
) -> Optional[Dict[str, Any]]:
    """The reading of a finished run, cached in ``DIR/head_collapse/<run_id>.json``.

    None if the run's corpus file is missing. The cache is keyed by the corpus
    file's size and the thresholds.
    """
    path = log_dir / "corpus" / f"{run_id}.npz"
    if not path.exists():
        return None
    key = {"size": path.stat().st_size, "thresholds": asdict(thresholds)}
    cache = log_dir / "head_collapse" / f"{run_id}.json"
    if cache.exists():
        stored: Dict[str, Any] = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    reading = asdict(read_head(arrays, method, loss, thresholds))
    reading["key"] = key
    write_atomic(cache, json.dumps(reading) + "\n")
    return reading
