"""An export killed midway (SIGKILL after its first file) leaves nothing that looks complete:
no output folder, or the earlier complete one untouched; the next export cleans up after it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ls_payloads as P
from label_sync.engine import SyncService

REPO = Path(__file__).resolve().parents[1]
CAR0, CAR1 = "car/img_a_1_0", "car/img_a_1_1"
# The real command, in a process that SIGKILLs itself right after the export's first file.
KILLED_AFTER_FIRST_FILE = """
import os, signal, sys
import pose6d.inout as inout
import ls_admin.export_table as table
real = inout.atomic_write_bytes
def write_then_die(path, data):
    real(path, data)
    os.kill(os.getpid(), signal.SIGKILL)
table.atomic_write_bytes = write_then_die
from ls_admin.cli.export import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def synced(tiny_dataset):
    service = SyncService(tiny_dataset)
    try:
        service.handle_event(P.created(11, 1, CAR0, 10, P.pose_result(), user=7))
        service.handle_event(P.created(12, 2, CAR1, 15, P.pose_result(azimuth=40.0), user=7))
    finally:
        service.close()
    return tiny_dataset


def export(dataset, out: Path, *extra: str, killed: bool = False) -> subprocess.CompletedProcess:
    args = ["--format", "table", "--quiet", "--data-root", str(dataset.root), "--out", str(out),
            *extra]
    cmd = [sys.executable, "-c", KILLED_AFTER_FIRST_FILE, *args] if killed else \
        [sys.executable, str(REPO / "scripts" / "export.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def age(paths) -> None:
    old = time.time() - 3600
    for path in paths:
        os.utime(path, (old, old))


def test_a_killed_export_leaves_no_output_and_the_next_one_cleans_up(synced, tmp_path):
    out = tmp_path / "table"
    run = export(synced, out, killed=True)
    assert run.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing that looks like a finished export
    (stage,) = [out.parent / name for name in leftovers(out)]
    assert stage.name.startswith(".table.partial-") and any(stage.iterdir())  # clearly partial
    age([stage])
    run = export(synced, out)
    assert run.returncode == 0, run.stderr
    assert leftovers(out) == [] and (out / "labels.csv").is_file()
    assert len((out / "labels.csv").read_text().splitlines()) == 3  # header + 2 labels


def test_a_killed_overwrite_keeps_the_earlier_export(synced, tmp_path):
    out = tmp_path / "table"
    assert export(synced, out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run = export(synced, out, "--overwrite", killed=True)
    assert run.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    age(out.parent / name for name in leftovers(out))
    assert export(synced, out, "--overwrite").returncode == 0
    assert leftovers(out) == []


def test_an_earlier_export_moved_aside_when_the_swap_was_killed_comes_back(synced, tmp_path):
    """Killed between moving the old output aside and moving the new one in: the old one,
    complete, is put back by the next export before it starts."""
    from ls_admin.export_source import remove_stale_stages

    out = tmp_path / "table"
    assert export(synced, out).returncode == 0
    aside = tmp_path / ".table.old-abc123"
    aside.mkdir()
    os.replace(out, aside / "x")
    remove_stale_stages(out, now=time.time() + 3600)
    assert (out / "labels.csv").is_file() and not aside.exists()
