"""ImageNet benchmarks of lightly-er, following lightly's ``benchmarks/imagenet``."""
