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
    wait_until_idle,
)

from serieslabeler.labels import add_labels, current_labels, review_order
from serieslabeler.store import Workspace

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


def test_labeling_a_cluster_and_undoing_it_with_the_keyboard_in_chromium(chromium, tmp_path, monkeypatch):
    """The Label page's buttons act in their callbacks: in the real front end a click on Exclude,
    a label picked, a click on "Label N images" and the U shortcut label, move on and undo."""
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    ARTIFACTS.mkdir(exist_ok=True)
    place = prepare_demo_workspace(tmp_path / "sample")
    with Workspace.open(tmp_path / "sample") as workspace:
        add_labels(workspace, ["U", "R", "V", "O"], author="test")
        members = review_order(workspace, place["clustering"], 0)
    with running_app(tmp_path / "sample", log=ARTIFACTS / "streamlit-label.log") as url, chromium_page() as page:
        open_app_page(page, f"{url}/label?clustering={place['clustering']}&cluster=0")
        page.get_by_role("button", name="Exclude").first.click()
        wait_until_idle(page)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Label").first.click()
        page.get_by_role("option", name="R", exact=True).click()
        wait_until_idle(page)
        page.get_by_role("button", name=f"Label {len(members) - 1} images").click()
        wait_until_idle(page)
        with Workspace.open(tmp_path / "sample") as workspace:
            assert set(current_labels(workspace)["image_id"]) == set(members[1:].tolist())
        assert "cluster=1" in page.url, page.url
        page.locator("h1").first.click()
        page.keyboard.press("u")
        wait_until_idle(page)
        page.screenshot(path=str(ARTIFACTS / "e2e-label-undo.png"), full_page=True)
        with Workspace.open(tmp_path / "sample") as workspace:
            assert current_labels(workspace).empty
        assert "cluster=0" in page.url, page.url
        assert page.locator('[data-testid="stException"]').count() == 0
