"""The dashboard in a real browser: `streamlit run app.py` driven by Playwright in Chromium.

Nothing here touches the network: the app is served on localhost and the
browser is Debian's Chromium started with networking features off.

Screenshots of every page are written to a temporary folder (its path is
printed); set VEER_SCREENSHOTS=DIR to also keep small copies there, e.g.
``VEER_SCREENSHOTS=assets/screenshots python -m pytest tests/test_browser.py``
refreshes the README's pictures.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "assets" / "models"
MODEL_NAMES = ("joint", "binary_background", "binary_curve1", "binary_curve2")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 420  # whole-script runs on a busy 2-core machine
SHOT_WIDTH = 1400


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` in a subprocess, stopped (by its own pid) when done."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="veer-streamlit-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": SHOT_WIDTH, "height": 900})
        yield page
        browser.close()


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="veer-screenshots-"))
    print(f"\nscreenshots: {folder}")
    return folder


def wait_idle(page, timeout: float = RUN_TIMEOUT_S, ready: str = "h1") -> None:
    """Wait until the app has drawn ``ready`` and no script run is in progress for a few checks."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if not running and page.locator(ready).count() > 0:
            quiet += 1
            if quiet >= 5:
                return
        else:
            quiet = 0
        time.sleep(0.4)
    raise AssertionError(f"the app was still running after {timeout:.0f} s")


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def screenshot(page, shots: Path, name: str, keep: bool = True) -> Path:
    """A picture of the whole page (the app scrolls inside its main block, so grow the viewport)."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": SHOT_WIDTH, "height": min(int(height) + 20, 7000)})
    time.sleep(1.0)
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": SHOT_WIDTH, "height": 900})
    folder = os.environ.get("VEER_SCREENSHOTS")
    if folder and keep:
        small_copy(path, Path(folder) if Path(folder).is_absolute() else ROOT / folder)
    return path


def small_copy(path: Path, folder: Path, width: int = 900) -> Path:
    """A reduced, palette PNG for the README (a few hundred kB at most)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        out = folder / path.name
        img.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    return out


def sidebar_links(page) -> list[str]:
    """The page names in the sidebar (each link's last line: the first may be its icon's name)."""
    return [t.strip().splitlines()[-1].strip() for t in
            page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def verdict_text(page) -> str:
    return page.locator("h4", has_text="Verdict:").first.inner_text()


# --------------------------------------------------------------------------- tests

def test_every_page_and_the_decision_lever(server, browser_page, shots_dir):
    page = browser_page
    # a deep link as the very first visit on a fresh server still gets app.py's navigation
    page.goto(f"{server.url}/decision_lever")
    wait_idle(page, ready='h4:has-text("Verdict:")')
    no_exception(page)
    assert sidebar_links(page) == ["Home", "Live segmentation", "Results explorer", "Decision lever"]
    before = verdict_text(page)
    assert "SEMANTIC" in before
    screenshot(page, shots_dir, "decision_lever")

    lever = page.get_by_role("slider").first
    lever.focus()
    lever.press("End")  # all the way to 40 objects
    wait_idle(page, ready='h4:has-text("Verdict:")')
    page.wait_for_function("() => [...document.querySelectorAll('h4')].some(h => h.innerText.includes('INSTANCE'))",
                           timeout=60_000)
    after = verdict_text(page)
    assert after != before and "INSTANCE" in after
    assert page.get_by_text("40 traces drawn").count() > 0
    no_exception(page)
    screenshot(page, shots_dir, "decision_lever_40")

    for path, name, marker in (("", "home", "Class legend"), ("results_explorer", "results_explorer", "Speed"),
                               ("live_segmentation", "live_first_visit", "Live segmentation")):
        page.goto(f"{server.url}/{path}")
        wait_idle(page)
        page.get_by_text(marker).first.wait_for(timeout=60_000)
        no_exception(page)
        if name == "results_explorer":   # the shipped report's curve scores and where their rows are lost
            assert page.get_by_text("Digitised curves", exact=True).count() == 1
            assert page.get_by_text("Where the rows are lost", exact=True).count() == 1
        screenshot(page, shots_dir, name, keep=name != "live_first_visit")


def test_live_page_segments_a_sample_and_an_upload(server, browser_page, shots_dir, tmp_path):
    missing = [n for n in MODEL_NAMES if not (MODELS / f"{n}.pt").exists()]
    if missing:
        pytest.skip(f"no shipped weights for {', '.join(missing)} in assets/models: train them "
                    "(python -m veer train ...) to run the live page in a browser")
    from veer.io import save_png
    from veer.synth import find_samples, generate_log

    page = browser_page
    page.goto(f"{server.url}/live_segmentation")
    wait_idle(page)
    if find_samples(ROOT / "assets" / "samples"):
        # the page opens on the smallest bundled sample and segments it straight away
        page.get_by_text("Side by side").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
        wait_idle(page, ready='[data-testid="stDataFrame"]')
        no_exception(page)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        screenshot(page, shots_dir, "live_segmentation")
        for tab, marker, name in (("Conflict map", "by construction", "live_conflicts"),
                                  ("Digitise curves", "Calibration", "live_digitise")):
            page.get_by_role("tab", name=tab).click()
            page.get_by_text(marker).first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
            wait_idle(page)
            no_exception(page)
            screenshot(page, shots_dir, name)

    # an upload: a small generated log and its truth mask, through the real file inputs
    log = generate_log(424242, height=420, width=520)
    scan = save_png(tmp_path / "browser_scan.png", log.gray)
    mask = save_png(tmp_path / "browser_scan.mask.png", np.asarray(log.mask))
    radio = page.get_by_text("Upload a scan", exact=True)
    if radio.count():
        radio.first.click()
        wait_idle(page)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(0).set_input_files(str(scan))
    page.get_by_text("browser_scan.png").first.wait_for(timeout=60_000)
    # the scan's own run must end first: a file given to the second input while that run redraws
    # the page can be dropped (seen as a rare CI timeout waiting for "truth available")
    wait_idle(page, ready='[data-testid="stCaptionContainer"]')
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(1).set_input_files(str(mask))
    page.get_by_text("truth available").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    page.get_by_text("Side by side").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    wait_idle(page, ready='[data-testid="stDataFrame"]')
    no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    facts = page.locator('[data-testid="stCaptionContainer"]', has_text="browser_scan.png").first.inner_text()
    assert "520 x 420 px" in facts and "truth available" in facts
    # timing per pipeline, the linked figure, the scores table
    metrics = " ".join(page.locator('[data-testid="stMetricLabel"]').all_inner_texts())
    assert "Joint 3-class model" in metrics and "Separate masks, stitched" in metrics and "Device" in metrics
    assert page.locator(".js-plotly-plot").count() >= 2
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    assert page.get_by_text("Tolerant F1 counts").count() == 1  # the scores' explanation under the table
    screenshot(page, shots_dir, "live_upload")
