"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "assets" / "samples"
MODELS = ROOT / "assets" / "models"


def find_chromium() -> str | None:
    """Debian's Chromium (or another Chrome) if installed, else None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def pytest_collection_modifyitems(config, items):
    """Browser tests skip locally without a browser, but never under CI=true."""
    if find_chromium() or os.environ.get("CI", "").lower() == "true":
        return
    skip = pytest.mark.skip(reason="no Chromium found (apt-get install -y chromium); runs in CI")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS
