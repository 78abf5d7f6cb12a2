"""The protocol package is pure: it imports the standard library and itself, nothing else (no gRPC,
no I/O library, nothing of the proxy's)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import lipsync_protocol

SOURCE = Path(lipsync_protocol.__file__).parent


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every module `path` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module.split(".")[0])
    return found


def test_the_check_sees_what_a_module_imports() -> None:
    assert {"struct", "lipsync_protocol"} <= top_level_imports(SOURCE / "v2.py")


def test_the_protocol_package_imports_only_the_standard_library_and_itself() -> None:
    for path in sorted(SOURCE.rglob("*.py")):
        outside = top_level_imports(path) - set(sys.stdlib_module_names) - {"__future__", "lipsync_protocol"}
        assert outside == set(), path
