"""The first hour in a real browser (Debian Chromium + Playwright): the viewer shows the stored
original, larger than its thumbnail, and the brightness control changes the drawn thumbnails."""
from __future__ import annotations

from conftest import ROOT
from test_e2e_browser import chromium, pytestmark  # noqa: F401  (a fixture, and the browser marks)

from dashboard.screenshots import (
    chromium_page,
    natural_width_of_first_thumbnail,
    open_app_page,
    open_viewer,
    prepare_demo_workspace,
    running_app,
    set_brightness_to_max,
    thumbnail_mean,
)

ARTIFACTS = ROOT / "test-artifacts"


def test_the_viewer_opens_the_original_and_brightness_changes_the_thumbnails(chromium, tmp_path, monkeypatch):
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    ARTIFACTS.mkdir(exist_ok=True)
    place = prepare_demo_workspace(tmp_path / "sample")
    with running_app(tmp_path / "sample", log=ARTIFACTS / "streamlit-first-hour.log") as url, chromium_page() as page:
        open_app_page(page, f"{url}/label?clustering={place['clustering']}&cluster=1")
        thumbnail_width = natural_width_of_first_thumbnail(page)
        before = thumbnail_mean(page)
        set_brightness_to_max(page)
        after = thumbnail_mean(page)
        page.screenshot(path=str(ARTIFACTS / "e2e-brightness.png"), full_page=True)
        assert after > before + 10, f"mean pixel value {before:.1f} -> {after:.1f}"
        original_width = open_viewer(page)
        page.screenshot(path=str(ARTIFACTS / "e2e-viewer.png"), full_page=True)
        assert thumbnail_width == 256 and original_width == 384, (thumbnail_width, original_width)
        assert page.locator('[data-testid="stException"]').count() == 0
