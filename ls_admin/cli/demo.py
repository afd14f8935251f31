"""The pose6d demo: a demo dataset, Label Studio and the backend on this machine, one project.

Steps: (1) make the demo dataset in <dir>/dataset (reused if present); (2) start Label Studio
(SQLite, data in <dir>/label-studio, http://127.0.0.1:<port>, admin user from
<dir>/credentials.json, made on the first run); (3) start the backend on 127.0.0.1:<backend-port>;
(4) set up the project (scripts/setup_project.py's logic: re-runs import nothing twice); then
print where to click and wait. Ctrl-C stops the two servers it started, nothing else. A second
run reuses the dataset, Label Studio's data and the project. Logs: <dir>/logs/.

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
             "            them: a+ a++ (azimuth step), a=30, f (flip 180), n/p (CAD model), u (undo),",
             "            r (reset), ? (help); K + click: centre; R + drag: fit to a box;",
             "            set quality (1-4) and dense (n/y), Submit: the label lands in",
             "            dataset/annotations_new/ (README 'Annotating' has the whole workflow)"]
    if wait:
        lines.append("  stop      Ctrl-C (stops Label Studio and the backend started here)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect
    from ls_admin.project import SetupOptions, setup_project

    args = parse_args(argv)
    folder = args.dir.resolve()
    started = []  # servers this run started, stopped in reverse order
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    try:
        dataset = demo_dataset(folder, args.objects, args.seed)
        creds = None
        if args.label_studio_url:
            url, key = args.label_studio_url.rstrip("/"), args.api_key
            step(2, f"Label Studio: using {url}")
        else:
            creds = credentials(folder)
            server = start_label_studio(folder, args.port, creds)
            started.append(server)
            url, key = server.url, creds["token"]
        backend = start_backend(dataset, args.backend_port, folder / "logs" / "backend.log")
        started.append(backend)
        step(4, "project: setting up")
        client = connect(url, key)
        report = setup_project(client, SetupOptions(dataset, backend.url, title=TITLE), url)
        print(banner(url, report, creds, not args.no_wait), flush=True)
        while not args.no_wait:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
    except AdminError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a server that would not start: say why, stop the rest
        fail(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (logs: {folder / 'logs'})")
    finally:
        for proc in reversed(started):
            proc.stop()  # Label Studio keeps its data dir (not a temporary one)
    return 0

