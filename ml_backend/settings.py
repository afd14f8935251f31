"""Backend settings: command-line flags override environment variables (for Docker)."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from pose6d.defaults import ENV_PREFIX
from pose6d.fitting.cache import FIT_CACHE



def _opt(default, help: str, secret: bool = False):
    return dataclasses.field(default=default, metadata={"help": help, "secret": secret})


@dataclasses.dataclass
class Settings:
    data_root: Path
    host: str = _opt("127.0.0.1", "address to listen on (0.0.0.0 in a container)")
    port: int = _opt(9090, "port to listen on")
    workers: int = _opt(1, "gunicorn worker processes (about the cores to use)")
    threads: int = _opt(4, "threads per worker")
    basic_auth_user: str = _opt("", "require HTTP basic auth with this user (and password)")
    basic_auth_password: str = _opt("", "the basic-auth password", secret=True)
    sync_store: str = _opt("", "sync store: empty = SQLite beside the synced records; or a "
                           "postgresql://user:password@host/db URL (several replicas)", secret=True)
    pose_source: str = _opt("dataset", "initial poses: dataset | file:PATH (JSON / JSON lines) | "
                            "python:module:callable")
    prefill_fit: bool = _opt(False, "fit each initial pose to its photo before the task is shown "
                             "(auto-fit; the fit score becomes the prediction's score; fits are "
                             f"cached in {FIT_CACHE}, setup_project --prefill-fit fills them "
                             "ahead)")
    require_qualification: bool = _opt(False, "sync and refine only for annotators who passed "
                                       "the qualification test (pose6d-qualify); others' "
                                       "annotations are held, applied once they pass")
    edge_width: int = _opt(2, "px: edges are drawn this wide, so they survive Label Studio's scaling")
    max_request_mb: float = _opt(32.0, "larger request bodies are refused (413)")
    model_version: str = _opt("pose6d-0.1", "model version reported to Label Studio")
    log_level: str = _opt("INFO", "DEBUG, INFO, WARNING or ERROR")

    @property
    def basic_auth(self) -> bool:
        return bool(self.basic_auth_user or self.basic_auth_password)


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _env(name: str, default):
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return default
    if isinstance(default, bool):  # bool("false") is True: spell the words out
        if raw.strip().lower() not in TRUE + FALSE:
            raise ValueError(raw)
        return raw.strip().lower() in TRUE
    return type(default)(raw) if not isinstance(default, Path) else Path(raw)


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from flags, falling back to POSE6D_* environment variables, then defaults."""
    defaults = Settings(data_root=Path(os.environ.get(ENV_PREFIX + "DATA_ROOT", "")))
    p = argparse.ArgumentParser(
        prog="python -m ml_backend",
        description="Label Studio ML backend for 6D pose labelling (ImageNet3D convention). "
                    "Every flag can also be set as an environment variable POSE6D_<FLAG> "
                    "(e.g. POSE6D_DATA_ROOT, POSE6D_PORT, POSE6D_BASIC_AUTH_PASSWORD).")
    p.add_argument("--data-root", type=Path, default=None,
                   help="dataset root (images/, annotations/, CAD/; synced labels go to annotations_new/)")
    for field in dataclasses.fields(Settings):
        if field.name == "data_root":
            continue
        env_name = ENV_PREFIX + field.name.upper()
        try:
            default = _env(field.name, getattr(defaults, field.name))
        except ValueError:
            p.error(f"{env_name}={os.environ.get(env_name)!r} is not a valid "
                    f"{type(getattr(defaults, field.name)).__name__}")
        flag = "--" + field.name.replace("_", "-")
        kind = type(getattr(defaults, field.name))
        shown = ("(set)" if default else "(not set)") if field.metadata.get("secret") else repr(default)
        help_text = f"{field.metadata.get('help', '')} (env {env_name}; now {shown})"
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
        else:
            p.add_argument(flag, type=kind, default=default, help=help_text)
    p.add_argument("--dev", action="store_true",
                   help="serve with Flask's development server instead of gunicorn")
    args = p.parse_args(argv)
    data_root = args.data_root or defaults.data_root
    if not str(data_root) or not Path(data_root).is_dir():
        p.error(f"--data-root (or POSE6D_DATA_ROOT) must be an existing dataset folder, got {str(data_root)!r}")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if f.name != "data_root"}
    settings = Settings(data_root=Path(data_root).resolve(), **values)
    settings.dev = args.dev  # type: ignore[attr-defined]
    return settings
