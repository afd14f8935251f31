"""``python -m ml_backend --data-root DIR [--host 127.0.0.1] [--port 9090]``: serve the backend
with gunicorn (or Flask's development server with --dev)."""
from __future__ import annotations

import logging
import sys

from ml_backend.settings import parse_settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from ml_backend._wsgi import create_app
    from ml_backend.model import NO_PREFILL_FIT, autofit_installed

    if settings.prefill_fit and not autofit_installed():
        print(f"error: {NO_PREFILL_FIT}", file=sys.stderr)
        return 2

    if getattr(settings, "dev", False):
        create_app(settings).run(host=settings.host, port=settings.port, threaded=True)
        return 0
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("threads", settings.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", None)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1: unused, and
                self.cfg.set("control_socket_disable", True)  # it writes to $HOME/.gunicorn

        def load(self):
            return create_app(settings)

    Server().run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
