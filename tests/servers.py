"""Server subprocesses for tests: start on a free 127.0.0.1 port, wait for health, SIGTERM at the end.

    with transformers_serve(model_dir) as server:
        client_base_url = server.base_url + "/v1"

`server_process` is the general form: give it a function from port to argv.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class ServerStartError(RuntimeError):
    """The server exited, or was not healthy in time; the message ends with its log."""


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path
    host: str = HOST

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def server_process(argv: Callable[[int], Sequence[str]], *, env: Mapping[str, str] | None = None,
                   health_path: str = "/health", timeout: float = HEALTH_TIMEOUT_S) -> Iterator[Server]:
    """Run `argv(port)` until healthy (at most `timeout` s); SIGTERM it (then SIGKILL) on exit."""
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="eval-anything-server-"))
    log_path = log_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(argv(port)), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})})
    server = Server(process=process, port=port, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ServerStartError(f"server exited with code {process.returncode} before it was healthy:\n"
                                       f"{server.log()}")
            if _healthy(server.base_url + health_path):
                break
            if time.monotonic() > deadline:
                raise ServerStartError(f"server not healthy after {timeout:.0f} s:\n{server.log()}")
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def transformers_cli() -> str:
    beside = Path(sys.executable).parent / "transformers"
    if beside.exists():
        return str(beside)
    found = shutil.which("transformers")
    if found is None:
        raise FileNotFoundError("the transformers CLI is not installed (pip install 'transformers[serving]')")
    return found


@contextmanager
def transformers_serve(model_dir: str | Path, *extra_args: str,
                       timeout: float = HEALTH_TIMEOUT_S) -> Iterator[Server]:
    """`transformers serve` pinned to a local model folder, offline."""
    def argv(port: int) -> list[str]:
        return [transformers_cli(), "serve", str(model_dir), "--host", HOST, "--port", str(port), *extra_args]

    with server_process(argv, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, timeout=timeout) as server:
        yield server
