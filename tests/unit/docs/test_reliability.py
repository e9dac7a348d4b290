"""docs/reliability.md names the test behind each row: every test it names exists, and one it
marks [matrix] runs on every restic release (tests/support/restics.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "reliability.md"
NAMED = re.compile(r"`((?:unit|integration|systemd)/[\w/]+\.py)(?:::(\w+))?`( \[matrix\])?")


def _tests(path: Path) -> dict[str, bool]:
    """test name → whether it is marked restic_matrix."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            found[node.name] = any(
                "restic_matrix" in ast.unparse(decorator) for decorator in node.decorator_list
            )
    return found


def test_every_test_the_reliability_table_names_exists_as_it_says() -> None:
    text = DOC.read_text()
    problems = []
    seen = 0
    for row in (line for line in text.splitlines() if line.startswith("|")):
        for path, name, matrix in NAMED.findall(row):
            seen += 1
            module = ROOT / "tests" / path
            if not module.is_file():
                problems.append(f"{path}: no such file")
                continue
            tests = _tests(module)
            if name and name not in tests:
                problems.append(f"{path}::{name}: no such test")
            elif matrix and name and not tests[name]:
                problems.append(f"{path}::{name}: said [matrix], not marked restic_matrix")
            elif matrix and not name and not any(tests.values()):
                problems.append(f"{path}: said [matrix], no test in it is")
    assert seen > 20
    assert not problems, "\n".join(problems)
