"""Web-layer benchmarks, run by ``make bench`` after the engine's: ratios within one process, never timed tests.

Each module here exposes ``run(json_output: bool, quick: bool) -> dict`` and is discovered by ``__main__``.
"""
