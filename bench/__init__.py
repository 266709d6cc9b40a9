"""Benchmarks: `python -m bench [name ...]` (or `make bench`). Each prints its figures
beside the raw library ceiling measured in the same run."""
