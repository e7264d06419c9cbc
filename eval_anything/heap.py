"""Keeping the garbage collector off the objects a run starts with."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def startup_objects_left_out_of_collections() -> Iterator[None]:
    """The objects that exist when a run starts (torch's and transformers' modules: hundreds of
    thousands) are frozen for its duration. Each full collection scanned them all, 25-40 ms in which
    the judge client's event loop waits for the GIL (benchmarks/judge_throughput.py at concurrency 32:
    1.09-1.11 -> 1.07-1.08). Unfrozen afterwards, so cyclic garbage from before the run is still collected."""
    if gc.get_freeze_count():  # the caller froze objects itself: leave that alone
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
