"""Forward + backward time of every ER loss against its lightly parent.

Both losses of a pair run on the same inputs, interleaved in one process (parent, ER,
parent, ER, ...), and the table reports the median time of each and their ratio, so
machine load affects both alike. Target: ER <= 1.15x its parent in every case.

    python benchmarks/studies/loss_speed.py                # all cases, CPU
    python benchmarks/studies/loss_speed.py --device cuda  # on a GPU
    python benchmarks/studies/loss_speed.py --cases simclr-256 byol-256 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from torch import Tensor, nn

from benchmarks.common.tables import markdown_header, markdown_row
from lightly_er.loss import (
    ERDINOLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)

Step = Callable[[nn.Module], Tensor]


@dataclass
class Case:
    """One benchmark case: a parent loss, its ER adapter, and one training step."""

    name: str
    description: str
    parent: nn.Module
    er: nn.Module
    make_step: Callable[[torch.device], Step]


def _leaf(shape: Sequence[int], device: torch.device, grad: bool = True) -> Tensor:
    return torch.randn(*shape, device=device).requires_grad_(grad)


def _simclr(batch_size: int) -> Case:
    def make_step(device: torch.device) -> Step:
        out0 = _leaf((batch_size, 128), device)
        out1 = _leaf((batch_size, 128), device)
        return lambda loss: loss(out0, out1)

    return Case(
        f"simclr-{batch_size}",
        f"SimCLR B={batch_size} D=128",
        NTXentLoss(temperature=0.1),
        ERNTXentLoss(temperature=0.1),
        make_step,
    )


def _byol() -> Case:
    def make_step(device: torch.device) -> Step:
        p0, p1 = _leaf((256, 256), device), _leaf((256, 256), device)
        z0, z1 = _leaf((256, 256), device, False), _leaf((256, 256), device, False)
        return lambda loss: 0.5 * (loss(p0, z1) + loss(p1, z0))

    return Case(
        "byol-256",
        "BYOL B=256 D=256",
        NegativeCosineSimilarity(),
        ERNegativeCosineSimilarity(),
        make_step,
    )


def _dino() -> Case:
    def make_step(device: torch.device) -> Step:
        teacher = [_leaf((256, 65536), device, False) for _ in range(2)]
        student = [_leaf((256, 65536), device) for _ in range(8)]
        return lambda loss: loss(teacher, student, epoch=100)

    return Case(
        "dino-256",
        "DINO B=256 K=65536 2+6 crops",
        DINOLoss(output_dim=65536),
        ERDINOLoss(output_dim=65536),
        make_step,
    )


def _swav() -> Case:
    def make_step(device: torch.device) -> Step:
        high = [_leaf((256, 3000), device) for _ in range(2)]
        low = [_leaf((256, 3000), device) for _ in range(6)]
        return lambda loss: loss(high, low)

    return Case(
        "swav-256",
        "SwAV B=256 K=3000 2+6 crops",
        SwaVLoss(),
        ERSwaVLoss(),
        make_step,
    )


def all_cases() -> Dict[str, Callable[[], Case]]:
    """Case name -> constructor, in the order of the table."""
    return {
        "simclr-256": lambda: _simclr(256),
        "simclr-1024": lambda: _simclr(1024),
        "byol-256": _byol,
        "dino-256": _dino,
        "swav-256": _swav,
    }


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
    """Median forward+backward seconds of parent and ER, interleaved, and their ratio."""
    parent, er = case.parent.to(device), case.er.to(device)
    step = case.make_step(device)
    for _ in range(warmup):
        _time_once(parent, step, device)
        _time_once(er, step, device)
    parent_times: List[float] = []
    er_times: List[float] = []
    for _ in range(repeats):
        parent_times.append(_time_once(parent, step, device))
        er_times.append(_time_once(er, step, device))
    parent_median = statistics.median(parent_times)
    er_median = statistics.median(er_times)
    return {
        "parent_ms": 1e3 * parent_median,
        "er_ms": 1e3 * er_median,
        "ratio": er_median / parent_median,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs the chosen cases and prints a Markdown table."""
    cases = all_cases()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(cases), default=list(cases))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--target", type=float, default=1.15)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    device = torch.device(args.device)
    torch.manual_seed(0)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    print(f"torch {torch.__version__}, {where}, median of {args.repeats} runs")
    print()
    columns = ("Case", "lightly (ms)", "ER (ms)", "ER / lightly", "target")
    print(markdown_header(columns, "lrrrc"))
    for name in args.cases:
        case = cases[name]()
        result = run_case(case, device, args.repeats, args.warmup)
        verdict = "ok" if result["ratio"] <= args.target else "over"
        cells = (
            case.description,
            f"{result['parent_ms']:.1f}",
            f"{result['er_ms']:.1f}",
            f"{result['ratio']:.2f}",
            verdict,
        )
        print(markdown_row(cells), flush=True)


if __name__ == "__main__":
    main()
