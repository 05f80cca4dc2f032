"""Suite-wide options: `--fuzz-long` runs the fuzz tests with many more examples (same as GATEWAY_FUZZ_LONG=1).
Every app and gateway the tests start keeps its store in a temporary folder, never in the user's state folder."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--fuzz-long`."""
    parser.addoption("--fuzz-long", action="store_true", default=False, help="long fuzzing run (many examples)")


def pytest_configure(config: pytest.Config) -> None:
    """Export the flag before test modules are imported: their hypothesis settings are fixed at import; point
    the store's default folder (GATEWAY_STATE_DIR, inherited by the gateways tests start) at a temporary one."""
    if config.getoption("fuzz_long"):
        os.environ["GATEWAY_FUZZ_LONG"] = "1"
    if "GATEWAY_STATE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="gateway-test-state-")
        os.environ["GATEWAY_STATE_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
