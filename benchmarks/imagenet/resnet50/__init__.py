"""ResNet-50 ImageNet benchmark: lightly's methods and their ER versions.

Run ``python benchmarks/imagenet/resnet50/main.py --help`` (or
``python -m benchmarks.imagenet.resnet50.main --help`` from the repository root).
"""
