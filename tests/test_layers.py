"""The package layers, read from the source (every import, also those inside functions):

    pose6d  <-  label_sync  <-  ml_backend, ls_admin
    (inside pose6d: the core  <-  fitting, demo  <-  cli)

Each package imports only from itself and the layers below; ml_backend and ls_admin never import
each other; no module imports itself back through others (no cycles); no code outside tests/
and benchmarks/ edits sys.path; the bottom layer needs no web framework.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pose6d", "label_sync", "ml_backend", "ls_admin")
ALLOWED = {
    "pose6d": {"pose6d"},
    "label_sync": {"pose6d", "label_sync"},
    "ml_backend": {"pose6d", "label_sync", "ml_backend"},
    "ls_admin": {"pose6d", "label_sync", "ls_admin"},
}


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def project_modules(root: Path = REPO) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES if (root / pkg).is_dir()
            for p in (root / pkg).rglob("*.py")}


def layer_violations(root: Path = REPO) -> list[str]:
    wrong = []
    for name, path in project_modules(root).items():
        package = name.split(".")[0]
        for imported in imports_of(path, root):
            top = imported.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                wrong.append(f"{name} imports {imported}")
    return wrong


def test_each_package_imports_only_the_layers_below():
    assert len(project_modules()) > 40
    wrong = layer_violations()
    assert not wrong, "\n".join(wrong)


# Inside pose6d: the core (camera, renderer, dataset, labeling, ...) below its two subpackages,
# fitting (auto-fit and pins) and demo (the demo dataset's generators); cli on top. The public
# name pose6d.pins re-exports pose6d.fitting.pins (issue 21's API).
POSE6D_SUBPACKAGES = ("pose6d.fitting", "pose6d.demo", "pose6d.cli")
POSE6D_ALLOWED = {"core": set(), "pose6d.fitting": set(), "pose6d.demo": set(),
                  "pose6d.cli": {"pose6d.fitting", "pose6d.demo"}}
PUBLIC_ALIASES = {"pose6d.pins": {"pose6d.fitting"}}


def pose6d_part(name: str) -> str:
    return next((p for p in POSE6D_SUBPACKAGES if name == p or name.startswith(p + ".")), "core")


def pose6d_violations(root: Path = REPO) -> list[str]:
    wrong = []
    for name, path in project_modules(root).items():
        if not name.startswith("pose6d"):
            continue
        part = pose6d_part(name)
        allowed = POSE6D_ALLOWED[part] | PUBLIC_ALIASES.get(name, set()) | {part}
        for imported in imports_of(path, root):
            other = pose6d_part(imported) if imported.startswith("pose6d.") else "core"
            if other != "core" and other not in allowed:
                wrong.append(f"{name} imports {imported}")
    return wrong


def test_pose6d_core_sits_below_its_fitting_and_demo_subpackages():
    assert {pose6d_part(n) for n in project_modules() if n.startswith("pose6d.")} \
        == {"core", *POSE6D_SUBPACKAGES}
    wrong = pose6d_violations()
    assert not wrong, "\n".join(wrong)


def test_the_pose6d_check_sees_a_violation(tmp_path):
    (tmp_path / "pose6d" / "fitting").mkdir(parents=True)
    for init in ("pose6d/__init__.py", "pose6d/fitting/__init__.py"):
        (tmp_path / init).write_text("")
    (tmp_path / "pose6d" / "camera.py").write_text("def f():\n    from pose6d.fitting.fit import x\n")
    (tmp_path / "pose6d" / "fitting" / "fit.py").write_text("import pose6d.demo.dataset\n")
    assert sorted(pose6d_violations(tmp_path)) == [
        "pose6d.camera imports pose6d.fitting.fit", "pose6d.camera imports pose6d.fitting.fit.x",
        "pose6d.fitting.fit imports pose6d.demo.dataset"]


def test_no_import_cycles():
    modules = project_modules()
    graph = {name: {m for m in imports_of(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ re-exporting its modules is not a cycle of the code's logic.
    for name in graph:
        graph[name] = {m for m in graph[name]
                       if not (modules[m].name == "__init__.py" and name.startswith(m + "."))}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_sys_path_edits_outside_tests_and_benchmarks():
    offenders = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", "benchmarks", ".git") or "site-packages" in rel.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "sys.path.insert" in text or "sys.path.append" in text or "import _common" in text:
            offenders.append(str(rel))
    assert not offenders, offenders


@pytest.mark.parametrize("framework", ["flask", "werkzeug", "gunicorn", "label_studio_sdk"])
def test_the_bottom_layers_need_no_service_framework(framework):
    """pose6d and label_sync run without the web service's packages; the one SDK use is the
    config parser (pose6d/labeling_config.py), which Label Studio itself reads configs with."""
    allowed = {"label_studio_sdk": {"pose6d.labeling_config"}}.get(framework, set())
    users = [name for name, path in project_modules().items()
             if name.split(".")[0] in ("pose6d", "label_sync") and name not in allowed
             and any(m.split(".")[0] == framework for m in imports_of(path))]
    assert not users, users


def test_the_check_sees_a_violation(tmp_path):
    """An admin module that imports the service, inside a function and relatively: caught."""
    (tmp_path / "ls_admin" / "cli").mkdir(parents=True)
    (tmp_path / "ls_admin" / "__init__.py").write_text("")
    (tmp_path / "ls_admin" / "cli" / "__init__.py").write_text("")
    (tmp_path / "ls_admin" / "cli" / "probe.py").write_text(
        "from .. import project\ndef f():\n    from ml_backend.model import Pose6DModel\n")
    (tmp_path / "pose6d").mkdir()
    (tmp_path / "pose6d" / "probe.py").write_text("import label_sync.engine\n")
    assert sorted(layer_violations(tmp_path)) == [
        "ls_admin.cli.probe imports ml_backend.model",
        "ls_admin.cli.probe imports ml_backend.model.Pose6DModel",
        "pose6d.probe imports label_sync.engine"]
