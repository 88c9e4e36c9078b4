"""Benchmarks of the gateway against its baselines, measured side by side in one run.

`python -m bench` runs the set; see bench/README.md. Not part of the test suite.
"""
