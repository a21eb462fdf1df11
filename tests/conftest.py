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

# networks converted for OpenVINO are cached on disk (veer.openvino_engine.cache_dir):
# the tests keep theirs in the repository's pytest cache, not in the user's home
os.environ.setdefault("VEER_CACHE_DIR", str(ROOT / ".pytest_cache" / "veer"))


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


@pytest.fixture(scope="session")
def batch_run(tmp_path_factory) -> dict:
    """A small finished ``veer batch`` output folder: two good scans and one corrupt one.

    Made by :func:`veer.batch.run_batch` itself on an in-process Dask cluster
    (no worker processes to start) with the batch's test-only threshold
    segmenter (no weights), and a depth calibration so that LAS files are
    written too. Two synthetic 256 x 512 logs whose tracks veer.digitize finds
    (as in test_batch's make_scans) plus ``corrupt.tif``; a few seconds in all.
    Returns {"out", "scans", "corrupt"}. Shared: copy ``out`` before changing it.
    """
    import logging

    from distributed import Client, LocalCluster

    from veer import batch
    from veer.digitize import Calibration, find_tracks
    from veer.io import read_image
    from veer.synth import generate_log, save_log

    root = tmp_path_factory.mktemp("batch_run")
    scans_dir = root / "scans"
    scans: list[Path] = []
    for seed in range(100, 1000):
        path = Path(save_log(generate_log(seed, height=256, width=512), scans_dir, f"scan{len(scans):04d}")["image"])
        if find_tracks(read_image(path)):
            scans.append(path)
        else:
            for p in scans_dir.glob(f"{path.name.split('.')[0]}.*"):
                p.unlink()
        if len(scans) == 2:
            break
    corrupt = scans_dir / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(200))
    out = root / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        batch.run_batch([scans_dir], out, segmenter="threshold", client=client, progress=False,
                        calibration=Calibration(depth_points=((0.0, 1000.0), (255.0, 1051.0))))
    return {"out": out, "scans": scans, "corrupt": corrupt}


def assert_threads_match_one_caller(seg, rng, n_images: int, timeout: float = 60) -> None:
    """Segment ``n_images`` small random scans one by one, then twice each from as many
    threads at once (``n_images`` allowed to segment together): every threaded result,
    labels and probabilities, must equal the single caller's."""
    import threading

    from veer import infer

    images = [rng.integers(0, 256, size=(90 + 7 * i, 70 + 5 * i), dtype=np.uint8) for i in range(n_images)]
    expected = [seg.segment(img, return_probs=True) for img in images]
    results: dict[int, object] = {}

    def work(i):
        results[i] = seg.segment(images[i % n_images], return_probs=True)

    infer.set_max_concurrent(n_images)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2 * n_images)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    finally:
        infer.set_max_concurrent(1)
    assert len(results) == 2 * n_images
    for i, res in results.items():
        assert np.array_equal(res.labels, expected[i % n_images].labels)
        assert np.array_equal(res.probs, expected[i % n_images].probs)
