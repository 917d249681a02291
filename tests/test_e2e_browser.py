"""End to end: the real server (``streamlit run``) in headless Debian Chromium, every page."""
from __future__ import annotations

import os

import pytest
from conftest import ROOT

from dashboard.common import APP_TITLE, PAGES
from dashboard.screenshots import CHROMIUM, chromium_page, open_app_page, running_app

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM} (install Debian's chromium: 'make browser')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def test_every_page_loads_in_chromium_without_an_exception(chromium, sample_workspace, monkeypatch):
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(sample_workspace, log=ARTIFACTS / "streamlit.log") as url, chromium_page() as page:
        for spec in PAGES:
            open_app_page(page, f"{url}/{'' if spec.file == 'home.py' else spec.url}")
            page.screenshot(path=str(ARTIFACTS / f"e2e-{spec.url}.png"), full_page=True)
            assert page.title() == APP_TITLE
            assert page.locator('[data-testid="stException"]').count() == 0, f"an exception on the {spec.title} page"
            assert page.locator("h1").first.inner_text().strip() == (APP_TITLE if spec.file == "home.py" else spec.title)
