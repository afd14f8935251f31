"""Build docker/Dockerfile and run the image with podman: no Docker engine, no container registry.

What worked on Debian bookworm machines without a Docker engine, as flags:

- ``--runtime runc --cgroup-manager cgroupfs``: crun (podman's default) fails on cgroups v1 /
  hybrid hosts, and there may be no systemd to manage cgroups.
- ``--root`` / ``--runroot`` of our own (under $POSE6D_HOME, default ~/.cache/pose6d): the stand-in
  base image and the build's layer cache survive between runs (a re-run builds in seconds), and
  nothing touches the machine's default podman storage.
- ``--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`` on build and run: podman otherwise sets
  the host's hard limits, which an unprivileged or nested host may refuse to raise.
- ``--network host``: RUN steps reach Debian's mirror and PyPI without a CNI network, and the
  container reaches the test's PostgreSQL on 127.0.0.1.
- ``--volume <host CA bundle>:/etc/ssl/certs/ca-certificates.crt:ro`` on build: a machine behind a
  TLS-inspecting proxy trusts its own CA; harmless elsewhere (the same public CAs).
- ``build --format docker``: OCI images (podman's default) drop HEALTHCHECK.
- ``--pull=never``: the base must be the local stand-in; nothing is fetched from a registry.

No registry is reachable, so the Dockerfile's ``FROM python:3.11-slim-bookworm`` is a stand-in
built here: debootstrap of the same Debian release (minbase + python3, python3-venv, python3-pip,
ca-certificates), made to look like the official image (a venv at /usr/local puts ``python`` and
``pip`` first on PATH; Debian's Docker apt/dpkg settings: no .deb cache, no docs, man pages or
translations), imported and tagged with the FROM name. debootstrap uses the Debian mirror this
machine's apt uses (its sources), or debootstrap's default.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
IMAGE = "localhost/pose6d-backend:test"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STANDIN_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
STANDIN_LABEL = "pose6d.standin"
REPORT: list[str] = []  # what the container tests saw; tests/conftest.py prints it at the end

# Debian's Docker images (debuerreotype): apt keeps no .deb files or caches, no translations, and
# the slim variants install no documentation. The stand-in gets the same files.
STANDIN_FILES = {
    "etc/apt/apt.conf.d/docker-clean":
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/apt/apt.conf.d/docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
    "etc/dpkg/dpkg.cfg.d/docker":
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/groff/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/linda/*\npath-exclude /usr/share/lintian/overrides/*\n"
        "path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n"
        "path-exclude /usr/share/man/*\n",
}
STANDIN_CHANGES = ("ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV LANG=C.UTF-8", 'CMD ["python3"]')


class PodmanUnusable(RuntimeError):
    """Podman is installed but cannot run containers here (the reason is the message)."""


def pose6d_home() -> Path:
    return Path(os.environ.get("POSE6D_HOME") or Path.home() / ".cache" / "pose6d")


def dockerfile_base() -> str:
    """The Dockerfile's FROM image, as written. The stand-in is tagged with this short name, which
    podman stores as localhost/<name> and resolves FROM <name> to, with nothing pulled."""
    for line in DOCKERFILE.read_text().splitlines():
        if line.upper().startswith("FROM "):
            return line.split()[1]
    raise ValueError(f"{DOCKERFILE} has no FROM line")


def dockerfile_user() -> str:
    users = [line.split()[1] for line in DOCKERFILE.read_text().splitlines()
             if line.upper().startswith("USER ")]
    return users[-1]


def debian_mirror(suite: str, roots: tuple[Path, ...] = (Path("/etc/apt"),)) -> str | None:
    """The first enabled ``deb`` source of this machine's apt that serves ``suite``, read from
    sources.list, sources.list.d/*.list (one-line format) and sources.list.d/*.sources (deb822);
    None when there is none (debootstrap then uses its default mirror)."""
    for root in roots:
        files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
        for path in files:
            if not path.is_file():
                continue
            for line in path.read_text(errors="replace").splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] != ["deb"]:
                    continue
                words = words[1:]
                if words and words[0].startswith("["):  # [arch=amd64 signed-by=...]
                    while words and not words[0].endswith("]"):
                        words.pop(0)
                    words = words[1:]
                if len(words) >= 2 and words[1] == suite:
                    return words[0]
        for path in sorted((root / "sources.list.d").glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
                fields: dict[str, str] = {}
                key = None
                for line in stanza.splitlines():
                    if line.startswith("#"):
                        continue
                    if line[:1] in (" ", "\t") and key:
                        fields[key] += " " + line.strip()
                    elif ":" in line:
                        key, _, value = line.partition(":")
                        key = key.strip().lower()
                        fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                types, suites = fields.get("types", "").split(), fields.get("suites", "").split()
                if "deb" in types and suite in suites:
                    uris = fields.get("uris", "").split()
                    if uris:
                        return uris[0]
    return None


class Podman:
    """``podman`` with this project's storage and the flags above; ``podman(*args)`` runs it."""

    def __init__(self, home: Path | None = None, log=print):
        self.exe = shutil.which("podman")
        if not self.exe:
            raise FileNotFoundError("podman is not installed (scripts/setup_env.sh installs it: "
                                    "apt-get install podman runc debootstrap)")
        self.home = Path(home or pose6d_home()) / "podman"
        self.storage = self.home / "storage"
        # runroot/tmpdir: run-time state, cleared at boot where /run is a tmpfs; keyed by the
        # storage path so that two POSE6D_HOMEs do not share it. Podman records both paths in its
        # database, so they must stay the same between runs.
        key = hashlib.sha256(str(self.storage).encode()).hexdigest()[:12]
        run = Path("/run") if os.geteuid() == 0 else \
            Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        self.runroot = run / f"pose6d-podman-{key}"
        self.log = log
        self.global_args = [self.exe, "--root", str(self.storage), "--runroot", str(self.runroot),
                            "--tmpdir", str(self.runroot / "libpod"), "--runtime", "runc",
                            "--cgroup-manager", "cgroupfs"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, input: bytes | None = None,
                 stdin=None) -> subprocess.CompletedProcess:
        cmd = [*self.global_args, *map(str, args)]
        proc = subprocess.run(cmd, input=input, stdin=stdin, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {shlex.join(map(str, args))} failed ({proc.returncode}):\n"
                               f"{_text(proc.stdout)[-3000:]}\n{_text(proc.stderr)[-3000:]}")
        return proc

    def text(self, *args: str, **kwargs) -> str:
        return _text(self(*args, **kwargs).stdout).strip()

    def check_usable(self) -> None:
        """Raise PodmanUnusable when podman cannot run a container here at all."""
        if shutil.which("runc") is None:
            raise FileNotFoundError("runc is not installed (scripts/setup_env.sh installs it)")
        proc = self("info", check=False, timeout=120)
        if proc.returncode != 0:
            raise PodmanUnusable(f"`podman info` fails here: {_text(proc.stderr).strip()[-800:]}")

    def image_exists(self, name: str) -> bool:
        return self("image", "exists", name, check=False).returncode == 0

    def inspect_image(self, name: str) -> dict:
        return json.loads(self.text("image", "inspect", name))[0]

    # --- the stand-in base image ---

    def standin_recipe(self) -> str:
        """What the stand-in is made of; its hash labels the image, so a change rebuilds it."""
        return json.dumps({"base": dockerfile_base(), "packages": STANDIN_PACKAGES,
                           "files": STANDIN_FILES, "changes": STANDIN_CHANGES, "venv": "/usr/local",
                           "version": 1}, sort_keys=True)

    def ensure_standin(self) -> str:
        """Make the Dockerfile's base image (see the module doc) unless this recipe's is stored
        already. Returns what was done, for the log."""
        name = dockerfile_base()
        recipe = hashlib.sha256(self.standin_recipe().encode()).hexdigest()[:16]
        if self.image_exists(name) and \
                (self.inspect_image(name).get("Labels") or {}).get(STANDIN_LABEL) == recipe:
            return f"stand-in {name} reused from {self.storage}"
        if os.geteuid() != 0:
            raise PodmanUnusable("building the stand-in base image needs root (debootstrap)")
        if not shutil.which("debootstrap"):
            raise FileNotFoundError("debootstrap is not installed (scripts/setup_env.sh installs it)")
        suite = name.rsplit("-", 1)[-1]  # python:3.11-slim-bookworm -> bookworm
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.home, prefix="standin-") as tmp:
            root = Path(tmp) / "root"
            cmd = ["debootstrap", "--variant=minbase", "--include=" + ",".join(STANDIN_PACKAGES),
                   suite, str(root)]
            mirror = debian_mirror(suite)
            if mirror:
                cmd.append(mirror)
            proc = subprocess.run(cmd, capture_output=True, timeout=1800)
            if proc.returncode != 0:
                log_tail = _text(proc.stdout)[-2000:] + _text(proc.stderr)[-2000:]
                raise RuntimeError(f"debootstrap failed ({proc.returncode}):\n{log_tail}")
            for relpath, content in STANDIN_FILES.items():
                (root / relpath).parent.mkdir(parents=True, exist_ok=True)
                (root / relpath).write_text(content)
            _slim(root)
            proc = subprocess.run(["chroot", str(root), "python3", "-m", "venv", "/usr/local"],
                                  capture_output=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"python3 -m venv /usr/local in the stand-in failed:\n"
                                   f"{_text(proc.stderr)[-2000:]}")
            changes = [*STANDIN_CHANGES, f"LABEL {STANDIN_LABEL}={recipe}"]
            tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."],
                                   stdout=subprocess.PIPE)
            try:
                self("import", *[a for c in changes for a in ("--change", c)], "-", name,
                     stdin=tar.stdout, timeout=600)
            finally:
                tar.stdout.close()
                tar.wait()
        return f"stand-in {name} built by debootstrap ({suite}) in {time.monotonic() - t0:.0f} s"

    # --- the backend image ---

    def build(self, tag: str = IMAGE) -> float:
        """``podman build`` of docker/Dockerfile from the repository root; returns seconds."""
        args = ["build", "--format", "docker", "--pull=never", "--network", "host", *ULIMITS]
        if Path(CA_BUNDLE).is_file():
            args += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        args += ["-f", str(DOCKERFILE), "-t", tag, str(REPO)]
        t0 = time.monotonic()
        self(*args, timeout=3600)
        seconds = time.monotonic() - t0
        self("image", "prune", "-f", check=False)  # older builds' untagged images
        return seconds

    def remove_container(self, name: str) -> None:
        self("rm", "-f", "-t", "5", name, check=False, timeout=120)

    def remove_orphans(self, prefix: str) -> None:
        """Remove containers named ``<prefix><pid>`` whose process is gone: a test run that was
        killed leaves its detached container running."""
        names = self.text("ps", "-a", "--filter", f"name=^{prefix}", "--format", "{{.Names}}")
        for name in names.split():
            pid = name[len(prefix):]
            if pid.isdigit() and not _alive(int(pid)):
                self.remove_container(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _slim(root: Path) -> None:
    """What Debian's slim images leave out (the dpkg excludes above), removed from ``root``."""
    share = root / "usr" / "share"
    for folder in ("man", "info", "groff", "linda", "lintian/overrides"):
        shutil.rmtree(share / folder, ignore_errors=True)
    for path in (share / "locale").glob("*"):
        if path.name != "locale.alias":
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    for path in (share / "doc").glob("*/*"):
        if path.name != "copyright":
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() \
                else path.unlink()
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace")
