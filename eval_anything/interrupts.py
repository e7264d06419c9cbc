"""Stopping a run on SIGTERM (what Slurm, Kubernetes and CI send before they kill) and SIGINT (Ctrl-C):
the first signal raises `Interrupted` in the main thread, where generation runs, so the sample log
is flushed and synced and the manifest marked interrupted on the way out; a second signal exits
at once. Python runs signal handlers between bytecodes of the main thread, so a line already
handed to the log's write is never cut by the exception."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from eval_anything.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _StopHandler:
    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signal_number: int, frame: Any) -> None:
        name = signal.Signals(signal_number).name
        if self.received is not None:
            os.write(2, f"eval-anything: second {name}: exiting now\n".encode())
            os._exit(128 + signal_number)
        self.received = signal_number
        os.write(2, f"eval-anything: {name} received: stopping (a second {name} exits at once)\n".encode())
        raise Interrupted(signal_number)


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """SIGTERM and SIGINT raise `Interrupted` inside the block (in the main thread only: signal
    handlers can be set nowhere else); the previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _StopHandler()
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
