"""ViT ImageNet benchmark: lightly's DINO and its ER version.

Run ``python benchmarks/imagenet/vitb16/main.py --help`` (or
``python -m benchmarks.imagenet.vitb16.main --help`` from the repository root). It
needs timm (``pip install -e ".[benchmarks]"``).
"""
