"""Forward + backward time of every ER loss against its lightly parent and its floor.

The parent, the ER loss and (for the sphere losses) the floor run on the same inputs,
interleaved in one process (parent, ER, floor, parent, ...), and the table reports
the median time of each and the ratios, so machine load affects all alike.

- The floor of a sphere case is what any all-pairs entropy estimate must do: the
  L2 normalization and the N x (N + M) Gram matrix of each entropy term's rows
  (M the memory's rows), forward and backward, through autograd. lightly's negative
  cosine similarity has no such matrix, so BYOL-ER is held to the floor
  (target <= 1.5x); NT-Xent has one, so SimCLR-ER is held to its parent (target
  <= 1.15x). Nearest-neighbor (``knn``) and log-determinant cases are reported as
  they are. DINO and SwAV are held to their parents (<= 1.15x).

    python benchmarks/studies/loss_speed.py                # all cases, CPU
    python benchmarks/studies/loss_speed.py --threads 1    # one intra-op thread
    python benchmarks/studies/loss_speed.py --device cuda  # on a GPU
    python benchmarks/studies/loss_speed.py --cases simclr-256 byol-256 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks.common.er_options import ESTIMATORS
from benchmarks.common.tables import markdown_header, markdown_row
from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import SphereEstimator
from lightly_er.loss import (
    ERDINOLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)

Step = Callable[[nn.Module], Tensor]


@dataclass
class Case:
    """One benchmark case: a parent loss, its ER adapter, one training step.

    ``floor`` is the Gram-matrix floor of the step's entropy terms (None for the
    discrete losses); ``held_to`` says which ratio the target applies to:
    ``"parent"``, ``"floor"`` or ``None`` (reported as it is).
    """

    name: str
    description: str
    parent: nn.Module
    er: nn.Module
    make_step: Callable[[torch.device], Tuple[Step, Optional[Step]]]
    held_to: Optional[str] = "parent"


def _leaf(shape: Sequence[int], device: torch.device, grad: bool = True) -> Tensor:
    return torch.randn(*shape, device=device).requires_grad_(grad)


def _gram_floor(rows: Sequence[Tensor], memory: int = 0) -> Step:
    """normalize + N x (N + M) Gram of each entropy term's rows, summed."""

    def floor(_: nn.Module) -> Tensor:
        total = torch.zeros((), device=rows[0].device)
        for x in rows:
            z = F.normalize(x, dim=1)
            support = z
            if memory:
                bank = torch.ones(memory, x.shape[1], device=x.device)
                support = torch.cat([z, bank])
            total = total + (z @ support.T).sum()
        return total

    return floor


def _simclr(
    batch_size: int, estimator: SphereEstimator = "plugin", memory: int = 0
) -> Case:
    def make_step(device: torch.device) -> Tuple[Step, Optional[Step]]:
        out0 = _leaf((batch_size, 128), device)
        out1 = _leaf((batch_size, 128), device)
        return (lambda loss: loss(out0, out1)), _gram_floor([out0, out1], memory)

    suffix = "" if estimator == "plugin" else f"-{estimator}"
    suffix += f"-memory{memory}" if memory else ""
    return Case(
        f"simclr-{batch_size}{suffix}",
        f"SimCLR B={batch_size} D=128 {estimator}"
        + (f" memory {memory}" if memory else ""),
        NTXentLoss(temperature=0.1),
        ERNTXentLoss(
            temperature=0.1,
            estimator=EntropyEstimator(name=estimator, memory_size=memory),
        ),
        make_step,
        held_to=None if estimator in UNTARGETED else "parent",
    )


def _byol(estimator: SphereEstimator = "plugin", memory: int = 0) -> Case:
    def make_step(device: torch.device) -> Tuple[Step, Optional[Step]]:
        p0, p1 = _leaf((256, 256), device), _leaf((256, 256), device)
        z0, z1 = _leaf((256, 256), device, False), _leaf((256, 256), device, False)
        step = lambda loss: 0.5 * (loss(p0, z1) + loss(p1, z0))  # noqa: E731
        return step, _gram_floor([p0, p1], memory)

    suffix = "" if estimator == "plugin" else f"-{estimator}"
    suffix += f"-memory{memory}" if memory else ""
    return Case(
        f"byol-256{suffix}",
        f"BYOL B=256 D=256 {estimator}" + (f" memory {memory}" if memory else ""),
        NegativeCosineSimilarity(),
        ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(name=estimator, memory_size=memory),
            prediction="x0",
        ),
        make_step,
        held_to=None if estimator in UNTARGETED else "floor",
    )


def _dino(memory: int = 0) -> Case:
    def make_step(device: torch.device) -> Tuple[Step, Optional[Step]]:
        teacher = [_leaf((256, 65536), device, False) for _ in range(2)]
        student = [_leaf((256, 65536), device) for _ in range(8)]
        return (lambda loss: loss(teacher, student, epoch=100)), None

    return Case(
        "dino-256" + (f"-memory{memory}" if memory else ""),
        "DINO B=256 K=65536 2+6 crops" + (f" memory {memory}" if memory else ""),
        DINOLoss(output_dim=65536),
        ERDINOLoss(
            output_dim=65536,
            estimator=EntropyEstimator(memory_size=memory),
            centering=False,
        ),
        make_step,
    )


def _swav() -> Case:
    def make_step(device: torch.device) -> Tuple[Step, Optional[Step]]:
        high = [_leaf((256, 3000), device) for _ in range(2)]
        low = [_leaf((256, 3000), device) for _ in range(6)]
        return (lambda loss: loss(high, low)), None

    return Case(
        "swav-256",
        "SwAV B=256 K=3000 2+6 crops",
        SwaVLoss(),
        ERSwaVLoss(use_sinkhorn=False),
        make_step,
    )


UNTARGETED = ("knn", "logdet")
"""Estimators reported as they are (no target)."""


def all_cases() -> Dict[str, Callable[[], Case]]:
    """Case name -> constructor, in the order of the table."""
    cases: Dict[str, Callable[[], Case]] = {
        "simclr-256": lambda: _simclr(256),
        "simclr-1024": lambda: _simclr(1024),
    }
    for estimator in ESTIMATORS[1:]:
        cases[f"simclr-256-{estimator}"] = partial(_simclr, 256, estimator)
    cases["byol-256"] = _byol
    for estimator in ESTIMATORS[1:]:
        cases[f"byol-256-{estimator}"] = partial(_byol, estimator)
    cases["byol-256-memory256"] = lambda: _byol(memory=256)
    cases["byol-256-memory1024"] = lambda: _byol(memory=1024)
    cases["byol-256-knn-memory1024"] = lambda: _byol("knn", memory=1024)
    cases["dino-256"] = _dino
    cases["dino-256-memory4096"] = lambda: _dino(memory=4096)
    cases["swav-256"] = _swav
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(loss: nn.Module, step: Step, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step(loss).backward()  # type: ignore[no-untyped-call]
    _sync(device)
    return time.perf_counter() - start


def run_case(
    case: Case, device: torch.device, repeats: int, warmup: int
) -> Dict[str, float]:
    """Median forward+backward seconds of parent, ER and floor, interleaved.

    Returns the medians in ms and the ratios ``ratio`` (ER / parent) and
    ``floor_ratio`` (ER / floor, NaN without a floor).
    """
    parent, er = case.parent.to(device), case.er.to(device)
    step, floor = case.make_step(device)
    runs: Dict[str, Tuple[nn.Module, Step]] = {
        "parent": (parent, step),
        "er": (er, step),
    }
    if floor is not None:
        runs["floor"] = (parent, floor)
    for _ in range(warmup):
        for loss, fn in runs.values():
            _time_once(loss, fn, device)
    times: Dict[str, List[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (loss, fn) in runs.items():
            times[key].append(_time_once(loss, fn, device))
    medians = {key: statistics.median(values) for key, values in times.items()}
    nan = float("nan")
    return {
        "parent_ms": 1e3 * medians["parent"],
        "er_ms": 1e3 * medians["er"],
        "floor_ms": 1e3 * medians["floor"] if "floor" in medians else nan,
        "ratio": medians["er"] / medians["parent"],
        "floor_ratio": medians["er"] / medians["floor"] if "floor" in medians else nan,
    }


def verdict(case: Case, result: Dict[str, float], target: float, floor: float) -> str:
    """``ok``/``over`` against the case's target, ``-`` where none applies."""
    if case.held_to is None:
        return "-"
    if case.held_to == "floor":
        return f"{'ok' if result['floor_ratio'] <= floor else 'over'} (floor)"
    return "ok" if result["ratio"] <= target else "over"


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs the chosen cases and prints a Markdown table."""
    cases = all_cases()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(cases), default=list(cases))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--target", type=float, default=1.15)
    parser.add_argument("--floor-target", type=float, default=1.5)
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (torch's default)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {where}, median of {args.repeats} runs, "
        f"load average {load:.2f} at the start"
    )
    print()
    columns = (
        "Case",
        "lightly (ms)",
        "ER (ms)",
        "ER / lightly",
        "Gram floor (ms)",
        "ER / floor",
        "target",
    )
    print(markdown_header(columns, "lrrrrrc"))
    for name in args.cases:
        case = cases[name]()
        result = run_case(case, device, args.repeats, args.warmup)
        floor_ms, floor_ratio = result["floor_ms"], result["floor_ratio"]
        cells = (
            case.description,
            f"{result['parent_ms']:.2f}",
            f"{result['er_ms']:.2f}",
            f"{result['ratio']:.2f}",
            "-" if floor_ms != floor_ms else f"{floor_ms:.2f}",
            "-" if floor_ratio != floor_ratio else f"{floor_ratio:.2f}",
            verdict(case, result, args.target, args.floor_target),
        )
        print(markdown_row(cells), flush=True)


if __name__ == "__main__":
    main()
