"""Backend settings: command-line flags override environment variables (for Docker)."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

ENV_PREFIX = "POSE6D_"


@dataclasses.dataclass
class Settings:
    data_root: Path
    host: str = "127.0.0.1"
    port: int = 9090
    workers: int = 1
    threads: int = 4
    basic_auth_user: str = ""
    basic_auth_password: str = ""
    sync_store: str = ""  # "" = SQLite beside the synced records; or a postgresql:// URL
    pose_source: str = "dataset"  # dataset | file:PATH | python:module:callable
    edge_width: int = 2  # px: edges are dilated so they survive Label Studio's down-scaling
    max_request_mb: float = 32.0
    model_version: str = "pose6d-0.1"
    log_level: str = "INFO"

    @property
    def basic_auth(self) -> bool:
        return bool(self.basic_auth_user or self.basic_auth_password)


def _env(name: str, default):
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return default
    return type(default)(raw) if not isinstance(default, Path) else Path(raw)


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from flags, falling back to POSE6D_* environment variables, then defaults."""
    defaults = Settings(data_root=Path(os.environ.get("POSE6D_DATA_ROOT", "")))
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
        default = _env(field.name, getattr(defaults, field.name))
        flag = "--" + field.name.replace("_", "-")
        kind = type(getattr(defaults, field.name))
        p.add_argument(flag, type=kind, default=default, help=f"(env {ENV_PREFIX}{field.name.upper()}, "
                       f"default {default!r})")
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
