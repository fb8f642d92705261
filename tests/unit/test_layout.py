"""The package layout: no import cycle, small modules that say their job, no development notes."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("vl_serve", "vl_serve_plugins")
MAX_LINES = 300
# Modules allowed past MAX_LINES, each with the reason.
LONGER: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, package: str) -> set[str]:
    """The project modules a file imports, function-level imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def test_no_import_cycle() -> None:
    """No module reaches itself through imports, not even through one inside a function.

    ``from pkg import x`` in a submodule of ``pkg`` is an edge to the package's ``__init__``,
    which imports its submodules: such a pair is a cycle and is reported.
    """
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    for name in modules:
        stack, seen = [(name, [name])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == name:
                    pytest.fail("import cycle: " + " -> ".join([*trail, nxt]))
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_small_and_says_its_job(name: str) -> None:
    path = _modules()[name]
    text = path.read_text()
    lines = text.count("\n")
    if text.strip():  # an empty package marker needs no docstring
        doc = ast.get_docstring(ast.parse(text))
        assert doc, f"{path.relative_to(REPO)} starts with no docstring"
        first = doc.splitlines()[0]
        assert first.endswith(".") or first.endswith(":"), f"{name}: {first!r} is not one line"
    assert lines <= MAX_LINES or name in LONGER, f"{name} has {lines} lines (at most {MAX_LINES})"


# Words about how the project was developed, which a user or maintainer can do nothing with.
_HISTORY = re.compile(
    r"session [0-9]|pre-?regist|review mend|seed (tutorial|document|[0-9])|seeds/|"
    r"before [0-9a-f]{7}\b|tracked in its own issue",
    re.IGNORECASE,
)


def test_product_files_speak_of_the_code_only() -> None:
    files = subprocess.run(
        [
            "git",
            "ls-files",
            "vl_serve",
            "vl_serve_plugins",
            "deploy",
            "docs",
            "tools",
            "README.md",
            "benchmarks",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    hits = [
        f"{name}:{number}: {line.strip()}"
        for name in files
        if not name.endswith((".png", ".json"))
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1)
        if _HISTORY.search(line)
    ]
    assert not hits, "\n".join(hits)
