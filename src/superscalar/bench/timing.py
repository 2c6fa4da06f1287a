"""Small timing helpers shared by the benchmark suites."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_second(fn: Callable[[], object], min_seconds: float) -> float:
    """Calls of `fn` per second, running it for at least `min_seconds` (best of 3 batches)."""
    fn()  # warm caches and lazy imports
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 3:
            break
        batch *= 2
    best = elapsed
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, time.perf_counter() - start)
    return batch / best


def seconds_per_call(fn: Callable[[], object], min_seconds: float) -> float:
    return 1.0 / per_second(fn, min_seconds)
