"""docker/: the backend image and the compose file, validated without a Docker engine.

Checks the wiring a `docker compose up` would only reveal at run time: services, health checks,
start order, volumes, env names the backend really reads (derived from ml_backend.settings),
ports and URLs, secrets only from .env, the COPY sources, the non-root user, Open3D's system
libraries (ldd on this Debian), Label Studio's SSRF list (its own validate_ip) and the
PostgreSQL init script (run on a throwaway server).
"""
from __future__ import annotations

import ast
import dataclasses
import fnmatch
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ml_backend.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
LS_SITE = Path("/opt/ls-venv/lib/python3.11/site-packages/label_studio")
SERVICES = {"db", "backend", "label-studio"}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")
TEST_ONLY = {"pytest", "hypothesis", "playwright", "scipy", "pyyaml"}
IMAGE_REQUIREMENTS = ("docker/requirements-image.txt", "docker/requirements-image-nodeps.txt")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


# --- parsing helpers ---


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def env_of(compose: dict, service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def volume(spec: str) -> tuple[str, str, str]:
    """(source, target, mode) of a short-syntax volume; ``${VAR:?msg}`` sources kept whole."""
    source = re.match(r"(?:\$\{[^}]*\}|[^:$])*", spec).group(0)
    target, _, mode = spec[len(source) + 1:].partition(":")
    return source, target, mode or "rw"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def exec_form(args: str) -> list[str]:
    """A CMD / HEALTHCHECK CMD in exec form (JSON array) or shell form, as argv."""
    import json

    return json.loads(args) if args.startswith("[") else shlex.split(args)


def settings_env_names() -> set[str]:
    return {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


def _ignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex: ``**`` any depth, ``*`` / ``?`` within one part."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


def dockerignore_excludes(relpath: str) -> bool:
    """Docker's .dockerignore semantics: the last matching rule wins; a rule matching a folder
    covers everything in it."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        regex = _ignore_regex(rule.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not rule.startswith("!")
    return excluded


# --- compose: services, health, order, volumes ---


def test_three_services_with_health_checks_and_start_order(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    assert services["db"]["image"] == "postgres:15"
    assert services["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"
    assert services["backend"]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (DOCKER / services["backend"]["build"]["context"] / "docker/Dockerfile").is_file()
    assert services["backend"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["label-studio"]["depends_on"] == {"db": {"condition": "service_healthy"},
                                                      "backend": {"condition": "service_healthy"}}
    assert "/health" in " ".join(services["backend"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["label-studio"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])


def plain(text: str) -> str:
    """Compose text with ``${VAR:?msg}`` / ``${VAR:-x}`` reduced to ``${VAR}``."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}", r"${\1}", text)


def substitute(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], plain(text))


def env_example() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def dataset_wiring(compose: dict) -> tuple[str, str, str]:
    """(backend's dataset mount source, Label Studio's dataset mount source = target, Label
    Studio's document root), as written in the compose file (``${VAR}`` plain)."""
    backend, ls = compose["services"]["backend"], compose["services"]["label-studio"]
    root = env_of(compose, "backend")["POSE6D_DATA_ROOT"]
    mounts = {target: (plain(source), mode) for source, target, mode in map(volume, backend["volumes"])}
    dataset, mode = mounts[root]
    assert mode == "ro"
    assert mounts[f"{root}/annotations_new"] == (f"{dataset}/annotations_new", "rw")
    ls_mounts = [(plain(s), plain(t), m) for s, t, m in map(volume, ls["volumes"])]
    assert (dataset, dataset, "ro") in ls_mounts  # the host path: host-side tools agree on paths
    document_root = plain(env_of(compose, "label-studio")["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"])
    return dataset, dataset, document_root


def test_volumes_dataset_and_state(compose):
    ls = compose["services"]["label-studio"]
    dataset, _, document_root = dataset_wiring(compose)
    # Label Studio (io_storages/localfiles validate_connection) and ls_admin.local_files refuse a
    # storage equal to the document root: the dataset must lie strictly inside it, for any .env.
    assert dataset.startswith(document_root + "/") and dataset != document_root
    rest = dataset[len(document_root) + 1:]
    assert rest and ".." not in rest.split("/")
    for name in INTERPOLATION.findall(rest):  # a variable in the rest must not be empty
        assert re.search(r"\$\{" + name + r":\?", (DOCKER / "docker-compose.yml").read_text()), \
            f"${{{name}}} may be empty: use ${{{name}:?...}}"
    for name in INTERPOLATION.findall(document_root):
        assert re.search(r"\$\{" + name + r":\?", (DOCKER / "docker-compose.yml").read_text())
    named = {volume(m)[0] for s in compose["services"].values() for m in s.get("volumes", [])
             if not m.startswith(("$", ".", "/"))}
    assert named == set(compose["volumes"]) == {"pg_data", "ls_data"}
    assert ("ls_data", "/label-studio/data", "rw") in map(volume, ls["volumes"])
    assert ("pg_data", "/var/lib/postgresql/data", "rw") in map(volume, compose["services"]["db"]["volumes"])


def test_documented_dataset_passes_label_studio_and_setup_project(compose, tmp_path):
    """With .env.example's values (moved under tmp_path), the dataset path docker/README.md
    passes to setup_project.py --data-root is accepted by ls_admin.local_files' check and by Label
    Studio's own local-files check (strict subfolder of the document root)."""
    from unittest import mock

    from ls_admin import local_files

    env = {k: (str(tmp_path) + v if v.startswith("/") else v) for k, v in env_example().items()}
    dataset_src, _, document_root = dataset_wiring(compose)
    dataset, root = Path(substitute(dataset_src, env)), Path(substitute(document_root, env))
    dataset.mkdir(parents=True)
    readme = (DOCKER / "README.md").read_text()
    assert '--data-root "$DATASET_DIR"' in readme
    shell = re.search(r'^DATASET_DIR="([^"]+)"', readme, re.M).group(1)
    assert Path(re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], shell)) == dataset
    assert root in dataset.parents  # Label Studio's validate_connection: path.parents
    client = mock.MagicMock()
    client.import_storage.local.list.return_value = []
    with mock.patch.object(local_files, "document_root", return_value=root):
        prefix, state = local_files.ensure_local_storage(client, 1, dataset)
    assert "created" in state and prefix.endswith(f"{dataset.name}/")


# --- compose: env wiring ---


def test_backend_env_names_are_settings_the_backend_reads(compose):
    names = set(env_of(compose, "backend"))
    unknown = {n for n in names if n.startswith(ENV_PREFIX)} - settings_env_names()
    assert not unknown, f"ml_backend.settings reads no {sorted(unknown)}"
    assert names <= settings_env_names()
    for name, args in dockerfile_instructions():
        if name == "ENV":
            declared = {kv.split("=", 1)[0] for kv in shlex.split(args)}
            assert {n for n in declared if n.startswith(ENV_PREFIX)} <= settings_env_names()


def test_ports_and_urls_agree(compose):
    env = env_of(compose, "backend")
    port = env["POSE6D_PORT"]
    assert env["POSE6D_HOST"] == "0.0.0.0"  # the default 127.0.0.1 is unreachable in a container
    assert compose["services"]["backend"]["expose"] == [port]
    assert f"127.0.0.1:{port}/health" in " ".join(compose["services"]["backend"]["healthcheck"]["test"])
    docker_env = dict(kv.split("=", 1) for name, args in dockerfile_instructions() if name == "ENV"
                      for kv in shlex.split(args))
    assert docker_env["POSE6D_PORT"] == port and docker_env["POSE6D_DATA_ROOT"] == env["POSE6D_DATA_ROOT"]
    assert ("EXPOSE", port) in dockerfile_instructions()
    for doc in (DOCKER / "docker-compose.yml", DOCKER / "README.md"):
        text = doc.read_text()
        assert f"http://backend:{port}" in text and f"http://backend:{port}/webhook" in text
        assert not re.search(r"http://backend:(?!%s\b)\d+" % port, text)


def test_databases_wiring(compose):
    db, ls, backend = (env_of(compose, s) for s in ("db", "label-studio", "backend"))
    assert ls["DJANGO_DB"] == "default" and ls["POSTGRE_HOST"] == "db"
    assert (ls["POSTGRE_NAME"], ls["POSTGRE_USER"]) == (db["POSTGRES_DB"], db["POSTGRES_USER"])
    assert ls["POSTGRE_PASSWORD"] == "${LS_DB_PASSWORD}" and "${LS_DB_PASSWORD" in db["POSTGRES_PASSWORD"]
    url = urlsplit(backend["POSE6D_SYNC_STORE"])
    assert url.scheme == "postgresql" and url.hostname == "db"
    assert str(url.port) == ls["POSTGRE_PORT"] == "5432"
    script = init_script(compose)
    assert f"CREATE ROLE {url.username} " in script
    assert f"CREATE DATABASE {url.path.lstrip('/')} OWNER {url.username}" in script
    assert url.password == "${BACKEND_DB_PASSWORD}" and "${BACKEND_DB_PASSWORD" in db["BACKEND_DB_PASSWORD"]


def test_secrets_only_from_env_file(compose):
    for service in SERVICES:
        for name, value in env_of(compose, service).items():
            if any(word in name for word in SECRET_WORDS):
                assert INTERPOLATION.fullmatch(value + "}") or value.startswith("${"), \
                    f"{service}.{name} is hard-coded"
    used = set(INTERPOLATION.findall((DOCKER / "docker-compose.yml").read_text()))
    example = env_example()
    assert used == set(example), "docker/.env.example must list exactly the variables compose uses"
    for name, value in example.items():
        if any(word in name for word in SECRET_WORDS) and name != "LABEL_STUDIO_USERNAME":
            assert value == "", f".env.example must not ship a value for {name}"


# --- compose: Label Studio's SSRF protection ---


LS_DEFAULT_BANNED = (  # label_studio/core/utils/io.py validate_ip, 1.23.2
    "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 "
    "192.0.2.0/24 192.88.99.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 "
    "224.0.0.0/4 233.252.0.0/24 240.0.0.0/4 255.255.255.255/32 ::/128 ::1/128 ::ffff:0:0/96 "
    "::ffff:0:0:0/96 64:ff9b::/96 64:ff9b:1::/48 100::/64 2001:0000::/32 2001:20::/28 "
    "2001:db8::/32 2002::/16 fc00::/7 fe80::/10 ff00::/8").split()


def expected_banned(subnet: ipaddress.IPv4Network) -> list[str]:
    """Label Studio's default list with ``subnet`` cut out, plus the subnet's gateway."""
    out = []
    for text in LS_DEFAULT_BANNED:
        net = ipaddress.ip_network(text)
        if net.version == 4 and subnet.subnet_of(net):
            out += [str(n) for n in sorted(net.address_exclude(subnet))]
        else:
            out.append(text)
    return out + [f"{next(subnet.hosts())}/32"]


def test_ssrf_list_is_the_default_minus_the_compose_subnet(compose):
    if LS_SITE.is_dir():  # the embedded copy must still be Label Studio's own list
        source = (LS_SITE / "core/utils/io.py").read_text()
        block = source[source.index("default_banned_subnets = ["):]
        assert re.findall(r"'([0-9a-f:./]+)'", block[:block.index("]")]) == LS_DEFAULT_BANNED
    ls = env_of(compose, "label-studio")
    assert ls.get("ML_BLOCK_LOCAL_IP", "true") != "false"
    assert ls.get("SSRF_PROTECTION_ENABLED", "true") != "false"
    assert ls["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    subnet = ipaddress.ip_network(compose["networks"]["pose6d"]["ipam"]["config"][0]["subnet"])
    assert ls["USER_ADDITIONAL_BANNED_SUBNETS"].split(",") == expected_banned(subnet)
    assert " " not in ls["USER_ADDITIONAL_BANNED_SUBNETS"]  # Label Studio splits on "," only
    for service in compose["services"].values():
        assert service["networks"] == ["pose6d"]


def test_label_studio_itself_allows_backend_and_refuses_the_rest(compose, tmp_path):
    """Label Studio's own validate_ip under the compose environment (its venv, if installed)."""
    python = Path(os.environ.get("LABEL_STUDIO_BIN", "/opt/ls-venv/bin/label-studio")).parent / "python"
    if not python.is_file():
        pytest.skip("Label Studio's environment is not installed here")
    ls = env_of(compose, "label-studio")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
           "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls"),
           **{k: ls[k] for k in ("USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS")}}
    probe = ("import os, sys, label_studio\n"
             "sys.path.insert(0, os.path.dirname(label_studio.__file__))\n"
             "import django; django.setup()\n"
             "from core.utils.io import validate_ip\n"
             "for ip in sys.argv[1:]:\n"
             "    try:\n        validate_ip(ip); print(ip, 'allowed')\n"
             "    except Exception:\n        print(ip, 'refused')\n")
    ips = ["172.30.60.5", "172.30.60.254", "172.30.60.1", "127.0.0.1", "169.254.169.254",
           "10.1.2.3", "192.168.1.10", "172.17.0.1", "172.30.61.5", "::1"]
    out = subprocess.run([str(python), "-c", probe, *ips], env=env, capture_output=True,
                         text=True, timeout=120)
    verdicts = dict(line.split() for line in out.stdout.splitlines() if line.count(" ") == 1)
    assert verdicts == {ip: "allowed" if ip in ips[:2] else "refused" for ip in ips}, out.stderr[-2000:]


# --- compose: PostgreSQL init script ---


def init_script(compose: dict) -> str:
    """The db's init script as the container sees it (compose turns $$ into $)."""
    config = compose["services"]["db"]["configs"][0]
    assert config["target"].startswith("/docker-entrypoint-initdb.d/") and config["target"].endswith(".sh")
    return compose["configs"][config["source"]]["content"].replace("$$", "$")


def test_init_script_creates_the_backend_database(compose, postgres_server, tmp_path):
    """Run the script as the postgres image would, then use the sync store on the new database."""
    psql = postgres_server.bin / "psql"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/psql").symlink_to(psql)
    name = "pw_" + tmp_path.name[-8:].replace("-", "_")
    script = init_script(compose).replace("CREATE ROLE pose6d", f"CREATE ROLE {name}").replace(
        "DATABASE pose6d OWNER pose6d", f"DATABASE {name} OWNER {name}")  # a fresh name per run
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "PGHOST": "127.0.0.1",
           "PGPORT": str(postgres_server.port), "POSTGRES_USER": "postgres",
           "POSTGRES_DB": "postgres", "BACKEND_DB_PASSWORD": "it's a \"test\" pw"}
    proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from label_sync.store import SyncStore

    store = SyncStore(f"postgresql://{name}@127.0.0.1:{postgres_server.port}/{name}")
    try:
        with store.transaction() as tx:
            assert tx.count("pose6d_sync_version") == 0
    finally:
        store.close()


# --- Dockerfile ---


def test_dockerfile_base_user_and_command():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    names = [name for name, _ in instructions]
    assert names.index("USER") < names.index("CMD")
    cmd = [exec_form(args) for name, args in instructions if name == "CMD"][-1]
    assert cmd == ["python", "-m", "ml_backend"]
    assert "ENTRYPOINT" not in names
    health = [args for name, args in instructions if name == "HEALTHCHECK"][0]
    assert "/health" in health and "CMD" in health
    assert (REPO / "ml_backend/__main__.py").is_file()


def test_copy_sources_exist_and_reach_the_build_context():
    sources = []
    for name, args in dockerfile_instructions():
        if name in ("COPY", "ADD"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            assert not any(p.startswith("--from") for p in shlex.split(args))
            sources += parts[:-1]
    assert {"pose6d/", "label_sync/", "ml_backend/", "pyproject.toml", *IMAGE_REQUIREMENTS} \
        <= set(sources)
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY source {source} is not in the repository"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        kept = [f for f in files if not dockerignore_excludes(f.relative_to(REPO).as_posix())]
        assert kept, f".dockerignore drops everything under {source}"
    assert dockerignore_excludes(".git/config") and dockerignore_excludes("tests/conftest.py")
    assert dockerignore_excludes("pose6d/__pycache__/camera.cpython-311.pyc")
    assert not dockerignore_excludes("pose6d/camera.py")


def test_backend_requirements_cover_imports_and_skip_test_tools():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["requirements-backend.txt"] }' in pyproject
    backend = {re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
               for line in (REPO / "requirements-backend.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not backend & TEST_ONLY
    dist = {"PIL": "pillow", "open3d": "open3d-cpu", "psycopg2": "psycopg2-binary",
            "label_studio_sdk": "label-studio-sdk", "werkzeug": "flask", "yaml": "pyyaml",
            "cv2": "opencv-python-headless"}
    imported = set()
    for folder in ("pose6d", "label_sync", "ml_backend"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"pose6d", "label_sync", "ml_backend",
                                                             "__future__"}
    missing = {dist.get(m, m).lower() for m in third_party} - backend
    assert not missing, f"requirements-backend.txt lacks {sorted(missing)}"


def requirement_specs(path: Path) -> dict[str, str]:
    """{lower-case distribution name: version specifier} of a requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0]
            out[name.lower()] = line[len(name):].replace(" ", "")
    return out


IMAGE_LEAVES_OUT = {"tqdm"}


def test_image_requirements_are_the_backends_minus_unused_dependencies():
    """The image installs docker/requirements-image*.txt, not requirements-backend.txt: the same
    packages and versions, with open3d-cpu and label-studio-sdk installed --no-deps (their
    imports' needs listed instead). Left out on purpose: tqdm (only make_demo_dataset's progress
    bar uses it). OpenCV is in (the headless wheel): fit, fitaz and --prefill-fit work there."""
    backend = requirement_specs(REPO / "requirements-backend.txt")
    image = requirement_specs(REPO / IMAGE_REQUIREMENTS[0])
    nodeps = requirement_specs(REPO / IMAGE_REQUIREMENTS[1])
    assert set(nodeps) == {"open3d-cpu", "label-studio-sdk"}
    assert not set(image) & set(nodeps)
    for name, spec in backend.items():
        if name not in IMAGE_LEAVES_OUT:
            assert {**image, **nodeps}.get(name) == spec, f"{name}{spec} differs in the image"
    assert not set(image) & TEST_ONLY
    run = [args for name, args in dockerfile_instructions() if name == "RUN" and "pip install" in args][0]
    assert f"pip install -r {IMAGE_REQUIREMENTS[0]}" in run
    assert f"pip install --no-deps -r {IMAGE_REQUIREMENTS[1]}" in run
    assert "import open3d" in run and "LabelInterface" in run  # the build checks the imports
    assert "cv2" in run  # ... and auto-fit's OpenCV
    assert image.get("opencv-python-headless") == backend["opencv-python-headless"]


def apt_packages() -> set[str]:
    run = [args for name, args in dockerfile_instructions() if name == "RUN" and "apt-get install" in args][0]
    words = run.split("apt-get install", 1)[1].split("&&")[0].split()
    return {w for w in words if not w.startswith("-")}


def dpkg_excludes() -> list[str]:
    """The Dockerfile's dpkg path-exclude patterns (printf 'path-exclude=PREFIX%s\\n' 'a' 'b')."""
    run = [args for name, args in dockerfile_instructions() if name == "RUN" and "path-exclude" in args][0]
    words = shlex.split(run.split("&&")[0])
    prefix = words[1].split("=", 1)[1].split("%s")[0]
    return [prefix + word for word in words[2:words.index(">")]]


def test_apt_packages_cover_open3d_libraries():
    """Every library Open3D links, resolved to its Debian package here (bookworm, as the image),
    is installed by the Dockerfile, one of their dependencies, or in the python base image."""
    import open3d

    if not (shutil.which("ldd") and shutil.which("dpkg") and shutil.which("apt-cache")):
        pytest.skip("needs ldd, dpkg and apt-cache (Debian)")
    folder = Path(open3d.__file__).parent
    libs = [*folder.glob("pybind*.so"), *folder.glob("cpu/pybind*.so"), *folder.glob("libOpen3D.so*")]
    out = subprocess.run(["ldd", *map(str, libs)], capture_output=True, text=True).stdout
    assert "not found" not in out
    system = {os.path.realpath(p) for p in re.findall(r"=> (/\S+)", out) if not p.startswith(str(folder))}
    owners = subprocess.run(["dpkg", "-S", *sorted(system)], capture_output=True, text=True).stdout
    needed = {line.split(":")[0] for line in owners.splitlines()}
    closure = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", *sorted(apt_packages())],
        capture_output=True, text=True).stdout
    provided = {line.strip() for line in closure.splitlines() if not line.startswith(" ")}
    base = {"libc6", "libgcc-s1", "libstdc++6"}  # in python:3.11-slim-bookworm (apt needs them)
    assert needed - provided - base == set()
    excluded = dpkg_excludes()  # Mesa's drivers, left out of the image: none of these libraries
    assert excluded and not [p for p in system if any(fnmatch.fnmatch(p, e) for e in excluded)]
    assert {"libusb-1.0-0", "libgl1", "libegl1", "libx11-6"} <= apt_packages()


def test_readme_documents_running_and_scaling():
    text = (DOCKER / "README.md").read_text()
    for needle in ("cp .env.example .env", "docker compose up", "annotations_new", "sticky",
                   "POSE6D_SYNC_STORE", "BACKEND_WORKERS", "BACKEND_THREADS", "replicas"):
        assert needle.lower() in text.lower(), f"docker/README.md does not mention {needle!r}"
