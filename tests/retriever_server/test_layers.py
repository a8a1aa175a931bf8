"""The server's layers import downwards only: api/ -> search/ -> index/ (docs/design.md, layout).

Read from the source (every `import` and `from ... import`, lazy ones inside functions included), so
a new module lands in the right layer or this test says which import crosses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import retriever_server

PACKAGE = Path(retriever_server.__file__).parent
# layer -> the modules it must never import (prefix match on the dotted name)
FORBIDDEN = {
    "index": ("retriever_server.search", "retriever_server.api", "fastapi", "starlette", "asyncio"),
    "search": ("retriever_server.api", "fastapi", "starlette"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    modules = sorted((PACKAGE / layer).glob("*.py"))
    assert modules, f"retriever_server/{layer}/ has no modules"
    crossings = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in modules
        for name in sorted(imported_modules(path))
        if name.startswith(FORBIDDEN[layer])
    ]
    assert not crossings, "\n".join(crossings)


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from retriever_server.api import app\n    import fastapi\n")
    assert {"retriever_server.api", "retriever_server.api.app", "fastapi"} <= imported_modules(module)
