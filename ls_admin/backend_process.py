"""Start and stop the ML backend as a separate process (for the demo, the tests and benchmarks).

The backend is started as ``python -m ml_backend`` with this interpreter: a process, not an
import, so the admin tools stay independent of the service's code.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackendProcess:
    """``python -m ml_backend`` on loopback; ``url`` once started; ``stop()`` ends its process group."""

    def __init__(self, data_root: Path, port: int | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None, args: list[str] | None = None):
        self.data_root = Path(data_root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else None
        self.env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "BackendProcess":
        env = dict(os.environ, **self.env)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_backend", "--data-root", str(self.data_root),
             "--port", str(self.port), *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited with code {self.proc.returncode}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"backend did not become healthy on {self.url} within {timeout:.0f} s")

    def exit_code(self) -> int | None:
        """The process's exit code once it has ended (a negative signal number when killed),
        None while it runs or before ``start``."""
        return self.proc.poll() if self.proc is not None else None

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether ``/health`` answers OK now."""
        try:
            return requests.get(self.url + "/health", timeout=timeout).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """End the process group: also the workers of a server whose main process died (they
        would keep the port until they notice)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:  # the whole group has ended
            return
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # orphaned workers exit on SIGTERM within ~1 s
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "BackendProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
