"""The shape, enforced by reading every module's imports: api -> protocols -> core -> engine, nothing points up.

- a layer imports only its own and lower layers (and the cross-cutting errors and telemetry, which import none);
  below the api, nothing else of the gateway (no settings, no app);
- the core knows no wire format: no pydantic, no web framework;
- a protocol knows no tensors (nothing of the engine) and no other protocol (only the shared protocol modules);
- SSE framing bytes (`data: `, `event: `) are written in api/sse.py only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent
LAYERS = {"engine": 0, "core": 1, "protocols": 2, "api": 3}
CROSS_CUTTING = {"gateway", "gateway.errors", "gateway.telemetry"}
WIRE_LIBRARIES = ("pydantic", "fastapi", "starlette")
FRAMING = (b"data: ", b"event: ")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(under: str = "") -> list[Path]:
    return sorted((ROOT / under).rglob("*.py"))


def imports(path: Path) -> Iterator[str]:
    """Every module a file imports, wherever the import is (functions and TYPE_CHECKING blocks included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "gateway" else None


def is_cross_cutting(module: str) -> bool:
    if module == "gateway" or module.startswith("gateway.__"):  # the package itself (`__version__`)
        return True
    return any(module == name or module.startswith(name + ".") for name in CROSS_CUTTING - {"gateway"})


def test_the_layers_exist() -> None:
    assert all((ROOT / name).is_dir() for name in LAYERS)
    assert not list(ROOT.glob("openai/**/*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_up(path: Path) -> None:
    name = module_name(path)
    own = layer_of(name)
    if is_cross_cutting(name):
        above = [m for m in imports(path) if layer_of(m) is not None]
        assert not above, f"{name} is imported by every layer, so it may import none: {above}"
    if own is None:
        return
    upward = [m for m in imports(path) if (layer_of(m) or 0) > own]
    assert not upward, f"{name} imports a higher layer: {upward}"
    if own == LAYERS["api"]:
        return  # HTTP reads the settings; the layers under it get what they need as arguments
    outside = [m for m in imports(path) if m.startswith("gateway.") and layer_of(m) is None and not is_cross_cutting(m)]
    assert not outside, f"{name} imports modules outside the layers: {outside}"


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_knows_no_wire_format(path: Path) -> None:
    wire = [m for m in imports(path) if m.split(".")[0] in WIRE_LIBRARIES]
    assert not wire, f"{module_name(path)} imports {wire}"


@pytest.mark.parametrize("path", modules("protocols"), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_protocol_knows_no_tensors_and_no_other_protocol(path: Path) -> None:
    name = module_name(path)
    found = list(imports(path))
    assert not [m for m in found if m.startswith("gateway.engine")], f"{name} imports the engine"
    package = name.split(".")[2] if name.count(".") >= 3 else None  # gateway.protocols.<package>.<module>
    for imported in found:
        parts = imported.split(".")
        if parts[:2] == ["gateway", "protocols"] and len(parts) > 3 and (ROOT / "protocols" / parts[2]).is_dir():
            assert parts[2] == package, f"{name} imports another protocol's {imported}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_sse_framing_is_written_by_the_framer_only(path: Path) -> None:
    if path == ROOT / "api" / "sse.py":
        return
    literals = [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes)
    ]
    assert not [value for value in literals if any(marker in value for marker in FRAMING)]


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The scanners find what they look for (an import in a function, a framing byte string)."""
    sample = tmp_path / "sample.py"
    sample.write_text('def f():\n    from gateway.api.sse import frame\n    return b"event: x"\n')
    assert "gateway.api.sse" in set(imports(sample))
    assert layer_of("gateway.api.sse") == 3 and layer_of("gateway.core.choices") == 1
    assert any(
        b"event: " in node.value
        for node in ast.walk(ast.parse(sample.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes)
    )
