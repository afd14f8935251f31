"""The pose6d demo: a demo dataset, Label Studio and the backend on this machine, one project.

Steps: (1) make the demo dataset in <dir>/dataset (reused if present); (2) start Label Studio
(SQLite, data in <dir>/label-studio, http://127.0.0.1:<port>, admin user from
<dir>/credentials.json, made on the first run); (3) start the backend on 127.0.0.1:<backend-port>;
(4) set up the project (scripts/setup_project.py's logic: re-runs import nothing twice); then
print where to click and wait. While it waits it watches both servers: a backend that exits or
stops answering /health is restarted on the same port (said on stderr, with its exit code);
one that dies again at once (RESTARTS times within RESTART_WINDOW_S), or a Label Studio that
exits, ends the demo with exit code 1 and the reason. Ctrl-C or SIGTERM stops the two servers
it started, nothing else, and says so. A second run reuses the dataset, Label Studio's data and
the project. Logs: <dir>/logs/.

examples:
  bash scripts/demo.sh                       # = python scripts/demo.py in the project's venv
  python scripts/demo.py --port 8081 --objects 100
  python scripts/demo.py --no-wait           # set up, print, stop (for tests)
  python scripts/demo.py --label-studio-url http://127.0.0.1:8080 --api-key <token>
                                             # use a running Label Studio (its local-files
                                             # document root must contain <dir>)
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

from pose6d.cli import fail, parser_from_doc

TITLE = "pose6d demo"
USERNAME = "admin@example.com"
WATCH_S = 1.0  # how often the waiting demo looks at its servers
HEALTH_EVERY = 5  # ... and asks the backend's /health (every HEALTH_EVERY looks)
HEALTH_MISSES = 3  # a running backend that misses this many /health checks in a row is restarted
RESTARTS, RESTART_WINDOW_S = 3, 120.0  # more restarts than this within the window: give up


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser_from_doc(__doc__)
    p.add_argument("--dir", type=Path, default=Path("demo_data"),
                   help="demo folder: dataset, Label Studio data, logs (default: ./demo_data)")
    p.add_argument("--objects", type=int, default=40,
                   help="objects in a new demo dataset (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="demo dataset seed (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="Label Studio port (default: %(default)s)")
    p.add_argument("--backend-port", type=int, default=9090,
                   help="backend port (default: %(default)s)")
    p.add_argument("--no-wait", action="store_true", help="set up, print, then stop everything")
    p.add_argument("--label-studio-url", default=None,
                   help="use this running Label Studio instead of starting one")
    p.add_argument("--api-key", default=None, help="its API key (with --label-studio-url)")
    args = p.parse_args(argv)
    if args.objects < 1:
        p.error("--objects must be >= 1")
    if args.label_studio_url and not args.api_key:
        p.error("--label-studio-url needs --api-key")
    return args


def step(n: int, text: str) -> None:
    print(f"[{n}/4] {text}", file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def demo_dataset(folder: Path, objects: int, seed: int) -> Path:
    """<folder>/dataset: made once; a later run reuses it whatever --objects says."""
    from pose6d.demo.dataset import MANIFEST, make_demo_dataset

    root = folder / "dataset"
    manifest = root / MANIFEST
    if manifest.is_file():
        count = json.loads(manifest.read_text()).get("objects", "?")
        step(1, f"demo dataset: reusing {root} ({count} objects)")
        return root
    step(1, f"demo dataset: making {objects} objects in {root}")
    make_demo_dataset(root, objects=objects, seed=seed)
    return root


def credentials(folder: Path) -> dict[str, str]:
    """The admin user of the demo's Label Studio: made on the first run, then reused (Label
    Studio keeps the first password and token of a user in its data dir)."""
    path = folder / "credentials.json"
    if path.is_file():
        return json.loads(path.read_text())
    creds = {"username": USERNAME, "password": secrets.token_urlsafe(9),
             "token": secrets.token_hex(20)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds, indent=1))
    path.chmod(0o600)
    return creds


def start_label_studio(folder: Path, port: int, creds: dict[str, str]):
    from ls_admin.server import LabelStudioServer

    if not port_free(port):
        fail(f"port {port} is in use (another Label Studio?): stop it or pass --port")
    data_dir = folder / "label-studio"
    first = not data_dir.exists()
    step(2, f"Label Studio: starting on port {port}" + (" (first start: ~1 min of database "
                                                         "setup)" if first else ""))
    server = LabelStudioServer(folder, data_dir=data_dir, port=port, username=creds["username"],
                               password=creds["password"], token=creds["token"],
                               log_path=folder / "logs" / "label-studio.log")
    return server.start()


def start_backend(dataset: Path, port: int, log: Path):
    from ls_admin.backend_process import BackendProcess

    if not port_free(port):
        fail(f"port {port} is in use (another backend?): stop it or pass --backend-port")
    step(3, f"backend: starting on port {port}")
    log.parent.mkdir(parents=True, exist_ok=True)
    return BackendProcess(dataset, port=port, log_path=log).start()


def banner(url: str, report, creds: dict[str, str] | None, wait: bool) -> str:
    login = f"{creds['username']} / {creds['password']}" if creds else "your Label Studio account"
    lines = ["", "pose6d demo is ready", *report.lines(), "",
             f"  open      {url}/projects/{report.project_id}/data",
             f"  log in    {login}",
             "  then      'Label All Tasks'; once, turn on Auto-Annotation and Auto-Accept",
             "            Suggestions (bottom bar); type commands in the command box, Enter runs",
             "            them: a+ a++ (azimuth step), a=30, f (flip 180), n/p (next/previous CAD",
             "            model), c3 (model numbered 3, under its picture), u (undo), r (reset),",
             "            ? (help); K + Ctrl+click: centre; R + Ctrl+drag: fit to a box;",
             "            quality q1-q4 and dense dn/dy in the box (keys 1-4 and 5/6 outside it),",
             "            then Shift+Tab, Ctrl+Enter (Submit): the label lands in",
             "            dataset/annotations_new/ (README 'Annotating' has the whole workflow)"]
    if wait:
        lines += ["  stop      Ctrl-C or SIGTERM (stops Label Studio and the backend started here;",
                  "            a backend that dies meanwhile is restarted, said here)"]
    return "\n".join(lines)


def watch(backend, server) -> None:
    """Wait for Ctrl-C / SIGTERM, restarting a backend that died or stopped answering; returns
    never, raises SystemExit (via fail) when a server cannot be kept running."""
    restarts: list[float] = []
    misses = looks = 0
    while True:
        time.sleep(WATCH_S)
        looks += 1
        if server is not None and server.exit_code() is not None:
            fail(f"Label Studio exited (code {server.exit_code()}); see {server.log_path}", code=1)
        code = backend.exit_code()
        if code is None and looks % HEALTH_EVERY == 0:
            misses = 0 if backend.healthy() else misses + 1
        if code is None and misses < HEALTH_MISSES:
            continue
        why = (f"exited with code {code}" if code is not None
               else f"stopped answering {backend.url}/health")
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(restarts) > RESTARTS:
            fail(f"the backend {why} again ({RESTARTS} restarts within {RESTART_WINDOW_S:.0f} s); "
                 f"see {backend.log_path}", code=1)
        print(f"backend {why}: restarting it on port {backend.port} (log: {backend.log_path})",
              file=sys.stderr, flush=True)
        backend.stop()
        try:
            backend.start()
        except RuntimeError as exc:
            fail(f"the backend {why} and could not be restarted: {exc}", code=1)
        print(f"backend restarted on port {backend.port}", file=sys.stderr, flush=True)
        misses = 0


def _sigterm(*_) -> None:
    raise Stop()


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect
    from ls_admin.project import SetupOptions, setup_project

    args = parse_args(argv)
    folder = args.dir.resolve()
    started = []  # (name, server) this run started, stopped in reverse order
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)  # stop like Ctrl-C (the finally below)
    stopping = None
    try:
        dataset = demo_dataset(folder, args.objects, args.seed)
        creds = server = None
        if args.label_studio_url:
            url, key = args.label_studio_url.rstrip("/"), args.api_key
            step(2, f"Label Studio: using {url}")
        else:
            creds = credentials(folder)
            server = start_label_studio(folder, args.port, creds)
            started.append(("Label Studio", server))
            url, key = server.url, creds["token"]
        backend = start_backend(dataset, args.backend_port, folder / "logs" / "backend.log")
        started.append(("the backend", backend))
        step(4, "project: setting up")
        client = connect(url, key)
        report = setup_project(client, SetupOptions(dataset, backend.url, title=TITLE), url)
        print(banner(url, report, creds, not args.no_wait), flush=True)
        if not args.no_wait:
            watch(backend, server)
    except KeyboardInterrupt:
        stopping = "Ctrl-C"
    except Stop:
        stopping = "SIGTERM"
    except AdminError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a server that would not start: say why, stop the rest
        fail(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (logs: {folder / 'logs'})")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the stop short
        names = " and ".join(name for name, _ in reversed(started)) or "nothing"
        if stopping:
            print(f"\n{stopping}: stopping {names}", file=sys.stderr, flush=True)
        for _, proc in reversed(started):
            proc.stop()  # Label Studio keeps its data dir (not a temporary one)
        if stopping:
            print(f"stopped {names}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.demo
    raise SystemExit(main())
