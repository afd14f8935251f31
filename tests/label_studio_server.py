"""pytest fixtures around ls_admin.server.LabelStudioServer (one real Label Studio per session),
plus browser helpers for Playwright with Debian's Chromium."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

from ls_admin.server import LabelStudioError, LabelStudioServer  # noqa: F401  (re-exported)


def login(page, server: LabelStudioServer, timeout_ms: float = 30000,
          email: str | None = None, password: str | None = None) -> None:
    """Log a Playwright page in through Label Studio's login form (the admin by default)."""
    page.goto(f"{server.url}/user/login/", timeout=timeout_ms)
    page.fill("input[name=email]", email or server.username)
    page.fill("input[name=password]", password or server.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=timeout_ms)


def chromium_launch_kwargs() -> dict:
    """Playwright ``chromium.launch`` arguments for Debian's Chromium (no browser download)."""
    executable = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
    return {"executable_path": executable, "headless": True,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"]}


# --- pytest fixtures (import them into a test module: from tests.label_studio_server import ...) ---

try:
    import pytest
except ImportError:  # scripts import this module without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def label_studio_root(tmp_path_factory) -> Path:
        """The session's base temp dir, Label Studio's local-files document root: every
        ``tmp_path`` (and so ``tiny_dataset``) lies under it."""
        return tmp_path_factory.getbasetemp().resolve()

    @pytest.fixture(scope="session")
    def label_studio(label_studio_root: Path, tmp_path_factory, request) -> Iterator[LabelStudioServer]:
        """A running Label Studio for the whole session: ``.url``, ``.token``, ``.client()``,
        ``.username`` / ``.password`` (for a browser), ``.connect_local_files(project, path)``.

        Fails (never skips) when the binary is missing: CI installs it.
        """
        data_dir = tmp_path_factory.mktemp("label_studio_data")
        server = LabelStudioServer(label_studio_root, data_dir=data_dir)
        error = None
        try:
            server.start()
        except LabelStudioError as exc:
            server.stop(remove_data=False)
            error = str(exc)
        if error:  # outside the except: no chained traceback around the message
            pytest.fail(f"cannot start Label Studio: {error}", pytrace=False)
        failed_before = request.session.testsfailed
        try:
            yield server
        finally:
            server.stop(remove_data=False)
            if request.session.testsfailed > failed_before:  # show the server's side of it
                reporter = request.config.pluginmanager.get_plugin("terminalreporter")
                if reporter is not None:
                    reporter.write_line("\n" + server.log_tail())

    @pytest.fixture(scope="session")
    def label_studio_client(label_studio: LabelStudioServer):
        """``label_studio_sdk.LabelStudio`` client of the session's Label Studio."""
        return label_studio.client()


def create_user(server: LabelStudioServer, email: str, password: str) -> str:
    """A second annotator in the server's organisation, made with Label Studio's own Django
    (its API makes users without passwords, and sign-up needs an invite link). Returns the
    user's legacy API token, for calls made as that user (``server.client(token)``). Creating
    a user that exists already only returns its token."""
    import subprocess

    from ls_admin.server import find_binary

    python = Path(find_binary()).parent / "python"
    code = ("import os, sys, label_studio; sys.path.insert(0, os.path.dirname(label_studio.__file__)); "
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'core.settings.label_studio'; "
            "import django; django.setup(); from users.models import User; "
            "from organizations.models import Organization; "
            f"u = User.objects.filter(email={email!r}).first() or User.objects.create_user("
            f"email={email!r}, password={password!r}, username={email.split('@')[0]!r}); "
            "org = Organization.objects.first(); org.add_user(u) if not org.has_user(u) else None; "
            "u.active_organization = org; u.save(); "
            "from rest_framework.authtoken.models import Token; "
            "print('TOKEN', Token.objects.get_or_create(user=u)[0].key)")
    run = subprocess.run([str(python), "-c", code], env=dict(os.environ, **server.env()),
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(f"creating {email} failed: {run.stderr[-500:]}")
    return [line.split()[1] for line in run.stdout.splitlines() if line.startswith("TOKEN ")][-1]
