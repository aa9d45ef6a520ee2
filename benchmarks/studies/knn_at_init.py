"""kNN top-1 of an untrained backbone: the floor that pretraining has to beat.

On small, easy datasets a randomly initialized CNN already separates the classes well
(scikit-learn's digits: about 0.87), so a benchmark's kNN top-1 means little without
this reference. It uses the same data, subsets, backbone and kNN classifier as
``benchmarks/cifar10.py``, with the backbone in eval mode as after construction.

    python benchmarks/studies/knn_at_init.py --dataset digits --knn-k 20
    python benchmarks/studies/knn_at_init.py --dataset fashion-mnist \\
        --train-subset 2048 --test-subset 2000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import List, Optional, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchmarks.cifar.backbones import BACKBONES, build_backbone
from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.data import DATASETS, load_dataset
from benchmarks.cifar.run import make_loaders
from benchmarks.common.knn import knn_top1


@torch.no_grad()
def _features(net: nn.Module, loader: DataLoader[Tuple[Tensor, int, int]]) -> Tensor:
    return torch.cat([net(x).flatten(1) for x, _, _ in loader])


def _labels(loader: DataLoader[Tuple[Tensor, int, int]]) -> Tensor:
    return torch.cat([y for _, y, _ in loader])


def knn_top1_at_init(config: SweepConfig, seed: int) -> float:
    """kNN top-1 of a freshly built backbone (seeded) on the sweep's data."""
    data = load_dataset(config.dataset, config.data_dir)
    _, knn_train, knn_test = make_loaders(data, "simclr", 2, config, seed)
    torch.manual_seed(seed)
    net, _ = build_backbone(config.backbone)
    net.eval()
    return knn_top1(
        _features(net, knn_train),
        _labels(knn_train),
        _features(net, knn_test),
        _labels(knn_test),
        config.knn_k,
        config.knn_t,
        num_classes=data.num_classes,
        chunk=None,
    )


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--backbone", choices=BACKBONES, default="small")
    parser.add_argument(
        "--image-size", type=int, help="crop size (default: the dataset's)"
    )
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-t", type=float, default=0.1)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)
    config = SweepConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        backbone=args.backbone,
        image_size=args.image_size,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        knn_k=args.knn_k,
        knn_t=args.knn_t,
        num_workers=0,
    )
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    scores = [knn_top1_at_init(config, seed) for seed in args.seeds]
    per_seed = ", ".join(f"{s:.3f}" for s in scores)
    score = f"{statistics.mean(scores):.3f}"
    if len(scores) > 1:  # one seed has no spread to show
        score += f" ± {statistics.stdev(scores):.3f}"
    print(
        f"{args.dataset} {args.backbone} at init: kNN top-1 {score} (seeds: {per_seed})"
    )


if __name__ == "__main__":
    main()
