"""Suite-wide options: `--fuzz-long` runs the fuzz tests with many more examples (same as GATEWAY_FUZZ_LONG=1)."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--fuzz-long`."""
    parser.addoption("--fuzz-long", action="store_true", default=False, help="long fuzzing run (many examples)")


def pytest_configure(config: pytest.Config) -> None:
    """Export the flag before test modules are imported: their hypothesis settings are fixed at import."""
    if config.getoption("fuzz_long"):
        os.environ["GATEWAY_FUZZ_LONG"] = "1"
