"""A local Label Studio for the demo, the tests and benchmarks: start headless on loopback,
wait until healthy, stop (the pytest fixtures wrapping it are in tests/label_studio_server.py).

Label Studio facts this relies on (checked on 1.23.2, see docs/label_studio_notes.md):
- ``--host`` is only the hostname written into URLs; the bind address is ``--internal-host``
  (default 0.0.0.0), so both are passed.
- A busy ``--port`` is not an error: Label Studio silently moves to the next port and prints
  "Port N is in use". The log is checked for that and the start retried on a fresh port.
- ``/data/local-files/?d=...`` serves a file only if some project the user can see has a
  local-files import storage whose path contains it: see ``connect_local_files``.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ls_admin.backend_process import free_port
from pose6d.defaults import tool_home
from pose6d.errors import ServiceError

BIN_ENV = "LABEL_STUDIO_BIN"
FIRST_START_TIMEOUT_S = 240.0  # first start on a fresh data dir runs ~30 s of migrations (2 cores)


class LabelStudioError(ServiceError):
    """Label Studio could not be found, started or reached. The message says why."""


def find_binary() -> str:
    """The ``label-studio`` executable: $LABEL_STUDIO_BIN, else ``label-studio`` on PATH, else the
    one scripts/setup_env.sh installs ($POSE6D_HOME/label-studio, ~/.cache/pose6d by default)."""
    configured = os.environ.get(BIN_ENV)
    if configured:
        path = shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
        if not path:
            raise LabelStudioError(f"{BIN_ENV}={configured} is not an executable file")
        return path
    path = shutil.which("label-studio")
    installed = tool_home() / "label-studio" / "bin" / "label-studio"
    if not path and os.access(installed, os.X_OK):
        path = str(installed)
    if not path:
        raise LabelStudioError(f"label-studio not found: set {BIN_ENV} to its path or put it on PATH "
                               "(install: bash scripts/setup_env.sh)")
    return path


class LabelStudioServer:
    """One headless Label Studio process with its own data dir and an admin user.

    document_root: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (absolute); local files under it can be
    served. data_dir: LABEL_STUDIO_BASE_DATA_DIR (a fresh temp dir when None; removed on stop).
    The legacy token ``token`` authenticates API calls (``Authorization: Token <token>``).
    """

    def __init__(self, document_root: str | Path, data_dir: str | Path | None = None,
                 port: int | None = None, username: str = "admin@example.com",
                 password: str | None = None, token: str | None = None,
                 binary: str | None = None, log_path: str | Path | None = None,
                 extra_env: dict[str, str] | None = None):
        self.document_root = Path(document_root).resolve()
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="ls-data-")).resolve()
        self.port = port
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.token = token or secrets.token_hex(20)  # Label Studio keys are at most 40 chars
        self.binary = binary
        self.log_path = Path(log_path) if log_path else self.data_dir / "label-studio.log"
        self.extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:40123."""
        if self.port is None:
            raise LabelStudioError("Label Studio is not started")
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The process environment: admin user, legacy token, local files, loopback ML allowed."""
        env = dict(os.environ)
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            # Must be set before the organisation is first created (fresh data dir).
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # An ML backend / webhook on 127.0.0.1 is refused unless both are off.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "COLLECT_ANALYTICS": "false",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = FIRST_START_TIMEOUT_S, attempts: int = 3) -> "LabelStudioServer":
        """Start and wait until GET /health answers; raises LabelStudioError with the log tail."""
        binary = self.binary or find_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        for _ in range(attempts):
            if not fixed_port:
                self.port = free_port()
            self._spawn(binary)
            try:
                self.wait_healthy(timeout)
                return self
            except LabelStudioError:
                moved = "is in use" in self.log_text()
                self.stop(remove_data=False)
                if not moved or fixed_port:
                    raise
        raise LabelStudioError(f"no free port after {attempts} attempts; log: {self.log_path}")

    def _spawn(self, binary: str) -> None:
        cmd = [binary, "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(self.port), "--host", f"http://127.0.0.1:{self.port}"]
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(cmd)}\n".encode())
            log.flush()
            # Own process group: stop() kills the server and anything it spawned, nothing else.
            self._proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_healthy(self, timeout: float) -> None:
        """Poll GET /health until it answers 200; raises LabelStudioError (with log tail) if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LabelStudioError(f"Label Studio exited with code {self._proc.returncode}\n"
                                       f"{self.log_tail()}")
            if "is in use" in self.log_text():
                raise LabelStudioError(f"port {self.port} was taken; Label Studio moved elsewhere")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise LabelStudioError(f"Label Studio not healthy after {timeout:.0f} s\n{self.log_tail()}")

    def stop(self, remove_data: bool | None = None) -> None:
        """Kill the process group (SIGTERM, then SIGKILL after 10 s); remove an owned data dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if remove_data if remove_data is not None else self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def exit_code(self) -> int | None:
        """The process's exit code once it has ended, None while it runs (or when not started)."""
        return self._proc.poll() if self._proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def client(self, timeout: float = 60.0):
        """A ``label_studio_sdk.LabelStudio`` client authenticated with the legacy token."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token, timeout=timeout)

    def connect_local_files(self, project_id: int, path: str | Path, title: str = "local files") -> int:
        """Add a local-files import storage for ``path`` (under document_root) to a project so
        that ``/data/local-files/?d=...`` URLs below it are served. Returns the storage id."""
        path = Path(path).resolve()
        if self.document_root != path and self.document_root not in path.parents:
            raise LabelStudioError(f"{path} is not under the document root {self.document_root}")
        storage = self.client().import_storage.local.create(
            project=project_id, path=str(path), title=title, use_blob_urls=False)
        return int(storage.id)

    def local_files_url(self, path: str | Path) -> str:
        """The task-data URL of a file under document_root: /data/local-files/?d=<relative path>."""
        rel = Path(path).resolve().relative_to(self.document_root).as_posix()
        return f"/data/local-files/?d={rel}"

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
