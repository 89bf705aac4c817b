"""The layout's rules, checked on the source: no import cycle, core without Streamlit, a UI without torch."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("core", "ui", "bench")
HEAVY = ("torch", "hnswlib", "transformers", "sentence_transformers")


def _sources() -> dict[str, Path]:
    found = {}
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(p for pkg in PROJECT_PACKAGES for p in (ROOT / pkg).rglob("*.py"))]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file, function-level imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_import_cycle_anywhere():
    sources = _sources()
    graph = {name: {dep for dep in _imports(path) if dep in sources and dep != name} for name, path in sources.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_core_never_imports_streamlit():
    offenders = [name for name, path in _sources().items()
                 if name.startswith("core") and any(i.split(".")[0] == "streamlit" for i in _imports(path))]
    assert offenders == []


def test_the_ui_never_imports_models_or_index_libraries():
    offenders = {
        name: sorted(i for i in _imports(path) if i.split(".")[0] in HEAVY)
        for name, path in _sources().items()
        if name == "app" or name.startswith(("ui", "pages"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_only_the_settings_module_reads_vitrine_variables():
    readers = [name for name, path in _sources().items()
               if name != "core.settings" and "os.environ" in path.read_text(encoding="utf-8")
               and "VITRINE_" in path.read_text(encoding="utf-8") and not name.startswith("bench")]
    assert readers == []


def test_no_page_imports_another_page():
    pages = {name for name in _sources() if name == "app" or name.startswith("pages")}
    assert [(name, i) for name in pages for i in _imports(_sources()[name]) if i in pages] == []


def test_bench_scripts_run_as_modules_without_patching_the_import_path():
    """`python -m bench.NAME` from the repository root finds core/ by itself."""
    patched = [name for name, path in _sources().items()
               if name.startswith("bench") and "sys.path" in path.read_text(encoding="utf-8")]
    assert patched == []
