"""``python -m lightly_er``: the ER terms of a small real batch.

Takes a batch of scikit-learn's bundled 8x8 digit images (no download), makes two
augmented views of each (pixel noise of std 2 on a 0-16 scale), embeds them on the
unit sphere with a fixed random projection, and prints the entropy, reconstruction and
ER estimates, next to those of a collapsed embedding for contrast.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import normalize

from lightly_er.functional import sphere_entropy, vmf_reconstruction


def _two_views(images: np.ndarray, rng: np.random.Generator) -> List[Tensor]:
    views = []
    for _ in range(2):
        noisy = images + rng.normal(scale=2.0, size=images.shape)
        flat = noisy.reshape(len(images), -1)
        views.append(torch.from_numpy(flat - flat.mean(axis=0)))
    return views


def er_terms(z1: Tensor, z2: Tensor, kappa: float) -> Dict[str, float]:
    """Entropy of z2, reconstruction of z2 from z1 and their sum, in nats."""
    entropy = sphere_entropy(z2, kappa)
    reconstruction = vmf_reconstruction(z2, z1, kappa)
    return {
        "entropy": entropy.item(),
        "reconstruction": reconstruction.item(),
        "er": (entropy + reconstruction).item(),
    }


def main(argv: Optional[List[str]] = None) -> None:
    """Prints the ER terms of a batch of digits and of a collapsed batch."""
    parser = argparse.ArgumentParser(
        prog="python -m lightly_er", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128, help="embedding size")
    parser.add_argument("--kappa", type=float, default=10.0, help="vMF concentration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error(f"--batch-size must be >= 2, got {args.batch_size}")
    if args.dim < 2:
        parser.error(f"--dim must be >= 2, got {args.dim}")
    if args.kappa <= 0:
        parser.error(f"--kappa must be > 0, got {args.kappa}")

    try:
        # Optional: the library does not need scikit-learn, only this demo's data.
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        parser.exit(
            2,
            "error: python -m lightly_er needs scikit-learn for its digits: "
            "pip install scikit-learn (or lightly-er[benchmarks])\n",
        )

    images = load_digits().images
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(images), size=min(args.batch_size, len(images)), replace=False)
    view1, view2 = _two_views(images[idx], rng)
    projection = torch.from_numpy(rng.normal(size=(view1.shape[1], args.dim)))
    z1 = normalize(view1 @ projection, dim=1)
    z2 = normalize(view2 @ projection, dim=1)
    collapsed = normalize(torch.ones_like(z1) + 1e-3 * torch.randn_like(z1), dim=1)

    print(
        f"digits: {len(idx)} images, 2 views, embedding dim {args.dim}, "
        f"kappa {args.kappa:g} (nats; ER = entropy + reconstruction)"
    )
    print(f"{'embedding':<12}{'entropy':>12}{'reconstruction':>16}{'ER':>12}")
    for name, (a, b) in {
        "digits": (z1, z2),
        "collapsed": (collapsed, collapsed),
    }.items():
        terms = er_terms(a, b, args.kappa)
        print(
            f"{name:<12}{terms['entropy']:>12.3f}{terms['reconstruction']:>16.3f}"
            f"{terms['er']:>12.3f}"
        )


if __name__ == "__main__":
    main()
