"""Offline benchmarks (NAB scoring and the side-by-side detector comparison)."""
