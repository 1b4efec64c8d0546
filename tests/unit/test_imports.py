"""The shape of the imports: a pure core, no import cycles, every dependency declared."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT

# The pure core (shared by sampling, eval and serve) and the pure parts of sampling.
CORE = (
    "scotd.tasks",
    "scotd.prompts",
    "scotd.parsing",
    "scotd.voting",
    "scotd.selection",
    "scotd.paths",
    "scotd.sample.plan",
    "scotd.sample.records",
)
EDGES = ("ray", "openai", "vllm", "torch", "aiohttp")


def test_core_imports_without_ray_openai_vllm_torch_or_aiohttp() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {EDGES!r}:
                    raise ImportError(f"blocked import of {{name}}")

        sys.meta_path.insert(0, Blocked())
        for module in {CORE!r}:
            importlib.import_module(module)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _modules() -> dict[str, Path]:
    root = REPO_ROOT / "scotd"
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """``scotd`` modules that ``name`` imports anywhere (function bodies and TYPE_CHECKING blocks too).

    Importing ``scotd.a.b`` also runs ``scotd/a/__init__.py``; that implicit edge is left out, so a
    package whose ``__init__`` gathers its own modules is not counted as a cycle.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (scotd imports absolutely)"
            base = node.module or ""
            # ``from scotd import storage`` imports the module scotd.storage.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycles_among_scotd_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


# The stage packages (and the engines and teacher they drive): the core never imports them.
STAGES = ("sample", "corpus", "distill", "eval", "serve", "pipeline", "generation", "teacher", "student")
PURE_CORE = (
    "scotd.tasks",
    "scotd.prompts",
    "scotd.parsing",
    "scotd.voting",
    "scotd.selection",
    "scotd.paths",
)


def test_the_core_imports_nothing_from_the_stages() -> None:
    modules = _modules()
    core = [m for m in modules if m.startswith(PURE_CORE)]
    assert len(core) > len(PURE_CORE)  # tasks/ is a package: its modules count too
    bad = {m: sorted(t for t in _imports(m, modules[m], modules) if t.split(".")[1] in STAGES) for m in core}
    assert {m: v for m, v in bad.items() if v} == {}


def test_every_third_party_import_is_declared() -> None:
    """What scotd, serve and jobs import is in pyproject's dependencies (or an optional extra)."""
    import tomllib  # 3.11+, like the rest of the tooling

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    specs = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    declared = {_dist_name(s) for s in specs}
    import_names = {
        "yaml": "pyyaml",
        "sklearn": "scikit-learn",
    }  # import name -> distribution, where they differ
    imported: dict[str, str] = {}
    for folder in ("scotd", "serve", "jobs"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                for top in (n.partition(".")[0] for n in names):
                    if top not in sys.stdlib_module_names and top not in ("scotd", "serve", "__future__"):
                        imported.setdefault(top, str(path.relative_to(REPO_ROOT)))
    missing = {t: p for t, p in imported.items() if import_names.get(t, t).replace("_", "-") not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def _dist_name(spec: str) -> str:
    for stop in "[<>=!~; ":
        spec = spec.split(stop, 1)[0]
    return spec.strip().lower().replace("_", "-")


# Our own HTTP calls go through scotd.httpjson (the standard library): not openai's transitive httpx,
# nor a second client library, nor a second stdlib wrapper.
OTHER_HTTP_CLIENTS = ("httpx", "httpx2", "requests", "urllib3", "urllib.request")


def test_one_http_client_library() -> None:
    found = []
    for folder in ("scotd", "serve", "jobs", "tests", "benchmarks"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                for name in names:
                    if any(name == c or name.startswith(f"{c}.") for c in OTHER_HTTP_CLIENTS):
                        found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {name}")
    assert not found, f"use scotd.httpjson.http_json instead: {found}"
