"""The core shared by the CIFAR-10 and ImageNet benchmarks and the studies."""
