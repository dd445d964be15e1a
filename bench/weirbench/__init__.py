"""Benchmarks of Weir against baselines on one broker and one machine.

`scripts/bench.sh` runs `bench/run.py`, which starts the services (tansu,
an S3 server, `weir server`), runs each section of SECTIONS in run.py and
writes the raw numbers as JSON and the page BENCHMARKS.md.
"""
