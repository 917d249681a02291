"""Refresh the README screenshots: ``.venv/bin/python dashboard/screenshots.py``.

Prepares the bundled sample in a temporary workspace, starts the real app on a free loopback
port, and photographs pages in headless Chromium (Debian's ``/usr/bin/chromium`` driven by the
``playwright`` package; no browser is downloaded). The end-to-end test uses the same helpers.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = ROOT / "dashboard" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1200}
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_app(workspace: Path, log: Path | None = None) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port, headless, opening ``workspace``; yields its URL."""
    port = free_port()
    env = {**os.environ, "LABELER_WORKSPACE": str(workspace)}
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]
    with open(log or os.devnull, "wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_health(url, server)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_for_health(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {server.returncode} before serving")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer at {url} within {START_TIMEOUT_S} s")


@contextlib.contextmanager
def chromium_page() -> Iterator["playwright.sync_api.Page"]:  # noqa: F821
    """A page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport=VIEWPORT)
        finally:
            browser.close()


def open_app_page(page, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Load a page of the app and wait until its script has finished and its charts are drawn."""
    page.goto(url, timeout=timeout_s * 1000)
    page.wait_for_selector("h1", timeout=timeout_s * 1000)
    wait_until_idle(page, timeout_s)


def wait_until_idle(page, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the app's script has stopped running (1.5 s without the running indicator)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet_since = None if running else (quiet_since or time.monotonic())
        if quiet_since and time.monotonic() - quiet_since > 1.5:
            break
        time.sleep(0.25)
    page.wait_for_timeout(1000)


# --- the image viewer and the display setting, as a person uses them ---------------------------
GRID_IMAGES = '[data-testid="stImage"] img:not(.st-key-viewer img)'
VIEWER_IMAGE = ".st-key-viewer [data-testid='stImage'] img"


def thumbnail_mean(page, n: int = 4) -> float:
    """The mean pixel value (0-255) of the first ``n`` thumbnails as the browser draws them."""
    import io

    from PIL import Image, ImageStat

    images = page.locator('[data-testid="stImage"] img')
    means = []
    for i in range(min(n, images.count())):
        shot = Image.open(io.BytesIO(images.nth(i).screenshot())).convert("L")
        means.append(ImageStat.Stat(shot).mean[0])
    return sum(means) / len(means)


def set_brightness_to_max(page) -> None:
    """Open the Display popover and move the brightness slider to its end with the keyboard."""
    page.get_by_role("button", name="Display").first.click()
    slider = page.locator('[data-testid="stPopoverBody"] input[type="range"][aria-label="Brightness"]').first
    slider.focus()
    slider.press("End")
    wait_until_idle(page)
    page.keyboard.press("Escape")
    wait_until_idle(page)


def open_viewer(page) -> int:
    """Click the first thumbnail's View button; the natural width of the original then shown."""
    page.get_by_role("button", name="View").first.click()
    page.wait_for_selector(VIEWER_IMAGE)
    wait_until_idle(page)
    return int(page.locator(VIEWER_IMAGE).first.evaluate("img => img.naturalWidth"))


def natural_width_of_first_thumbnail(page) -> int:
    return int(page.locator('[data-testid="stImage"] img').first.evaluate("img => img.naturalWidth"))


def start_new_collection(page, url: str, images: list[Path], metadata: Path) -> None:
    """Home's New collection: a name, the photos and the CSV uploaded, the columns mapped (as guessed)."""
    open_app_page(page, url)
    page.get_by_text("New collection").first.click()
    page.get_by_label("Collection name").fill("Bananas 2020")
    page.keyboard.press("Enter")
    wait_until_idle(page)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(0).set_input_files([str(p) for p in images])
    wait_until_idle(page)
    inputs.nth(1).set_input_files(str(metadata))
    wait_until_idle(page)


def train_for_suggestions(target: Path) -> None:
    """Two clusters labeled by their majority stage, a classifier trained and its predictions stored,
    so the Label page has a suggestion to show."""
    from serieslabeler.clustering import evaluate_clustering
    from serieslabeler.labels import label_cluster
    from serieslabeler.models import predict, train_model
    from serieslabeler.store import Workspace
    from serieslabeler.views import latest_clustering_id

    with Workspace.open(target) as workspace:
        clustering = latest_clustering_id(workspace)
        for purity in evaluate_clustering(workspace, clustering, with_silhouette=False).per_cluster[:2]:
            label_cluster(workspace, clustering, purity.cluster, purity.majority, author="demo")
        predict(workspace, train_model(workspace, "head", seed=0).id)


def prepare_demo_workspace(target: Path) -> dict:
    """The sample workspace as a demo shows it: one cluster open with one image clicked out."""
    from serieslabeler.demo import prepare_sample
    from serieslabeler.labels import review_order
    from serieslabeler.views import latest_clustering_id

    with prepare_sample(target) as workspace:
        clustering = latest_clustering_id(workspace)
        excluded = int(review_order(workspace, clustering, 0)[0])
    return {"clustering": clustering, "cluster": 0, "x": excluded}


def prepare_series_proposal(workspace) -> str:
    """Ripeness declared as ordered stages, every fruit but the first labeled by its true
    boundaries, a model trained and predicting: the first fruit's Series page shows a proposal."""
    from serieslabeler.labels import add_labels, label_series
    from serieslabeler.models import predict, train_model
    from serieslabeler.store import list_series

    add_labels(workspace, ["U", "R", "V", "O"], "demo", ordered=True)
    found = list_series(workspace)
    for series in found[1:]:
        truth = dict(workspace.query_in("SELECT image_id, label FROM ground_truth WHERE image_id IN ({})", list(series.image_ids)))
        stages = [truth[i] for i in series.image_ids]
        firsts = [(stage, series.image_ids[k]) for k, stage in enumerate(stages) if k == 0 or stages[k - 1] != stage]
        label_series(workspace, series, firsts, author="demo")
    predict(workspace, train_model(workspace).id)
    return found[0].key


def take_screenshots(out: Path = SCREENSHOTS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    sample = ROOT / "data_samples" / "bananas"

    def shoot(page, name: str) -> None:
        target = out / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        shots.append(target)

    with tempfile.TemporaryDirectory(prefix="labeler-screenshots-") as folder:
        place = prepare_demo_workspace(Path(folder) / "sample")
        label_url = f"/label?clustering={place['clustering']}&cluster={place['cluster']}&x={place['x']}"
        with running_app(Path(folder) / "sample") as url, chromium_page() as page:
            for name, path in (("label", label_url), ("map", "/map"), ("home", "/")):
                open_app_page(page, url + path)
                shoot(page, name)
            start_new_collection(page, url, sorted((sample / "images").iterdir())[:8], sample / "metadata.csv")
            shoot(page, "new_collection")
        train_for_suggestions(Path(folder) / "sample")
        with running_app(Path(folder) / "sample") as url, chromium_page() as page:
            open_app_page(page, f"{url}/label?clustering={place['clustering']}&cluster=2")
            shoot(page, "label_suggestion")
            open_viewer(page)
            shoot(page, "viewer")
            shots.append(train_withheld_screenshot(page, url, Path(folder) / "sample", out))
            shots.append(series_screenshot(page, url, Path(folder) / "sample", out))
    return shots


def photograph(page, url: str, target: Path) -> Path:
    open_app_page(page, url)
    page.screenshot(path=str(target), full_page=True)
    return target


def train_withheld_screenshot(page, url: str, workspace_path: Path, out: Path = SCREENSHOTS) -> Path:
    """The Train page withholding its threshold: the stages declared, the model trained on the two
    clusters' labels (after :func:`train_for_suggestions`) knowing only some of them."""
    from serieslabeler.labels import add_labels
    from serieslabeler.store import Workspace

    with Workspace.open(workspace_path) as workspace:
        add_labels(workspace, ["U", "R", "V", "O"], "demo")
    return photograph(page, f"{url}/train", out / "train_withheld.png")


def series_screenshot(page, url: str, workspace_path: Path, out: Path = SCREENSHOTS) -> Path:
    """The Series page of a fruit with the model's monotone proposal shown (after the other shots:
    it labels the other fruits and trains a model)."""
    from serieslabeler.store import Workspace

    with Workspace.open(workspace_path) as workspace:
        key = prepare_series_proposal(workspace)
    return photograph(page, f"{url}/series?series={key}", out / "series.png")


if __name__ == "__main__":
    for shot in take_screenshots():
        print(shot.relative_to(ROOT))
