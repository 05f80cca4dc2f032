"""The store's place in the shape: it imports nothing of the gateway but the errors, and only the HTTP layer uses
it (so nothing of it can reach the per-token path of the core or the engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_layering import ROOT, imports, module_name, modules


@pytest.mark.parametrize("path", modules("state"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_store_imports_only_itself_and_the_errors(path: Path) -> None:
    found = [m for m in imports(path) if m.startswith("gateway.")]
    outside = [m for m in found if not m.startswith(("gateway.state", "gateway.errors"))]
    assert not outside, f"{module_name(path)} imports {outside}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_http_layer_uses_the_store(path: Path) -> None:
    name = module_name(path)
    if name.startswith(("gateway.api", "gateway.state")) or name in ("gateway.app", "gateway.config"):
        return
    users = [m for m in imports(path) if m.startswith("gateway.state")]
    assert not users, f"{name} imports the store: {users}"
