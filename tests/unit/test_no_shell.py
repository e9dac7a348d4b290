"""No program firebreak starts, restic least of all, goes through a shell: a file or site name
can never become shell syntax. (The odd names themselves: integration/test_odd_names.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import firebreak

PACKAGE = Path(firebreak.__file__).parent
SHELLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "spawnl")}


def test_nothing_in_the_package_starts_a_shell() -> None:
    found = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{where}: shell={ast.unparse(keyword.value)}")
            called = _called(node.func)
            if called in SHELLS:
                found.append(f"{where}: {'.'.join(called)}")
    assert not found, found


def _called(function: ast.expr) -> tuple[str, str]:
    """("os", "system") for os.system(...)."""
    if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
        return function.value.id, function.attr
    return "", ""
