"""smppgw.smpp is a library: nothing in it imports the gateway around it.

The SMPP codec, text codecs, receipts and sessions must be usable (and testable) without the
gateway's config, logging setup, engine, pipeline, MQTT or store, as go-smpp's packages are.
This walks the import statements rather than importing, so a lazy import inside a function
counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import smppgw.smpp

LIBRARY = Path(smppgw.smpp.__file__).parent


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_smpp_library_imports_nothing_of_the_gateway() -> None:
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 5, modules  # the walk found the package
    outside = [
        f"{path.relative_to(LIBRARY.parent)}:{line}: {module}"
        for path in modules
        for line, module in _imports(path)
        if (module == "smppgw" or module.startswith("smppgw."))
        and not (module == "smppgw.smpp" or module.startswith("smppgw.smpp."))
    ]
    assert outside == []


def test_relative_imports_stay_inside_the_library() -> None:
    """``from ..config import X`` would escape the check above: none may climb out."""
    for path in sorted(LIBRARY.rglob("*.py")):
        depth = len(path.relative_to(LIBRARY).parts)  # 1 for smpp/x.py, 2 for smpp/text/x.py
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level <= depth, f"{path}:{node.lineno} climbs out of smppgw.smpp"
