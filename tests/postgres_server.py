"""A throwaway PostgreSQL server for tests: initdb in a temp dir, start on a free loopback port.

The server binaries are required (CI installs Debian's postgresql): when they are missing the
fixture FAILS with a message saying so, it does not skip. Set POSE6D_PG_BIN to choose a bin dir.
As root the server runs as the ``postgres`` OS user (initdb refuses root).

    with PostgresServer() as server:
        url = server.create_database("t1")   # postgresql://postgres@127.0.0.1:<port>/t1
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ls_admin.backend_process import free_port


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) found."""


def find_pg_bin() -> Path:
    """The bin dir holding initdb and pg_ctl: $POSE6D_PG_BIN, Debian's newest, or the PATH."""
    candidates = [os.environ.get("POSE6D_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                         else 0, reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).parent))
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $POSE6D_PG_BIN, "
        "/usr/lib/postgresql/*/bin or PATH; install them (apt-get install postgresql) "
        "to run the PostgreSQL sync tests")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, trust auth on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path | None = None):
        self.bin = Path(bin_dir) if bin_dir else find_pg_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pose6d-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        self.running = False

    def _run(self, *args: str) -> None:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n"
                               f"{proc.stderr}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.dir / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def start(self) -> "PostgresServer":
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        # Throwaway cluster: durability off for speed; sockets in our dir, TCP on loopback only.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w",
                  "-t", "60", "-o", options, "start")
        self.running = True
        atexit.register(self.stop)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            self.running = False
            try:
                self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A running throwaway server for the whole session; fails (never skips) without binaries."""
    try:
        server = PostgresServer()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request) -> str:
    """The URL of a fresh database for one test."""
    clean = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40].lower()
    return postgres_server.create_database(f"t{next(_db_numbers)}_{clean}")


_db_numbers = itertools.count(1)
