"""Two house rules of docs/ARCHITECTURE.md, checked on the source: benchmarks import only tokrec's public
names, and the package never guards an import of its own modules."""

from __future__ import annotations

import ast
from pathlib import Path

from repo_scripts import REPO

_CATCHES_IMPORT = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def private_uses(source: str) -> list[str]:
    """Imports of a ``_``-prefixed tokrec module or name, and ``tokrec.x._y`` attribute paths."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tokrec":
            assert node.module is not None
            parts = node.module.split(".") + [a.name for a in node.names]
            found += [
                f"from {node.module} import {a.name}"
                for a in node.names
                if any(p.startswith("_") for p in parts)
            ]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("tokrec.") and "._" in a.name]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            path = ast.unparse(node)
            if path.startswith("tokrec."):
                found.append(path)
    return found


def guarded_own_imports(source: str) -> list[int]:
    """Lines of ``try`` blocks that import a tokrec module and catch its ImportError."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Try):
            continue
        own = any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "tokrec")
            or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tokrec" for a in n.names))
            for stmt in node.body
            for n in ast.walk(stmt)
        )
        caught = set()
        for h in node.handlers:
            types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            caught |= {"BaseException" if t is None else ast.unparse(t).split(".")[-1] for t in types}
        if own and caught & _CATCHES_IMPORT:
            lines.append(node.lineno)
    return lines


def test_the_checks_see_what_they_look_for() -> None:
    assert private_uses("from tokrec.models._signals import x\nfrom tokrec.models import _y\n") == [
        "from tokrec.models._signals import x",
        "from tokrec.models import _y",
    ]
    assert private_uses("import tokrec.data\nz = tokrec.data.loaders._id_strings(1)\n") == [
        "tokrec.data.loaders._id_strings"
    ]
    assert private_uses("from tokrec.models import signals\nimport numpy._core\n") == []
    guarded = "try:\n    from tokrec.x import y\nexcept ImportError:\n    y = None\n"
    assert guarded_own_imports(guarded) == [1]
    assert guarded_own_imports(guarded.replace("tokrec.x", "ray")) == []


def test_benchmarks_import_only_public_names() -> None:
    files = sorted((REPO / "benchmarks").rglob("*.py"))
    assert files
    found = {str(p.relative_to(REPO)): private_uses(p.read_text()) for p in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_package_never_guards_an_import_of_its_own_modules() -> None:
    files = sorted((REPO / "src" / "tokrec").rglob("*.py"))
    assert files
    found = {str(Path(p).relative_to(REPO)): guarded_own_imports(p.read_text()) for p in files}
    assert {k: v for k, v in found.items() if v} == {}
