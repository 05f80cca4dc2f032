"""The started app freezes what start-up left and collects the young generation less often."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi import FastAPI

from gateway.app import GC_YOUNG_THRESHOLD
from gateway.config import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The app's store in this test's folder."""
    return Settings(state_dir=tmp_path)


async def test_the_started_app_raises_the_young_generations_threshold_only(app: FastAPI) -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
